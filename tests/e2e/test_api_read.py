"""The dashboards' read API, served by a real ``orders serve`` over real PostgreSQL, with
a real worker keeping the read models: every endpoint, keyset pages, ETags,
read-your-writes, errors, the bearer token, and a read database of its own."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from bootstrap import migrate
from commands import AddItem, CancelOrder, Command, CreateOrder, PayOrder
from commands.client import CommandClient
from readmodels.tables import order_summary
from store import build_engine
from tests.support.api_server import ApiServer
from tests.support.cli import orders
from tests.support.workers import WorkerProcess


@pytest.fixture
def api(worker_env: dict[str, str]) -> Iterator[ApiServer]:
    server = ApiServer(worker_env).wait_ready()
    yield server
    server.stop()


def get(api: ApiServer, path: str, **headers: str) -> httpx.Response:
    return httpx.get(f"{api.url}{path}", headers=headers, timeout=30)


def sent(client: CommandClient, *commands: Command) -> list[str]:
    ids = []
    for command in commands:
        outcome = client.send(command).wait(timeout=30)
        assert outcome.status in ("accepted", "rejected"), outcome
        ids.append(command.command_id)
    return ids


@pytest.fixture
def shop(start_worker: Callable[..., WorkerProcess], client: CommandClient) -> str:
    """Three orders: o-1 paid, o-2 open, o-3 cancelled; the last command's id."""
    start_worker()
    ids = sent(
        client,
        CreateOrder("o-1", "alice"),
        AddItem("o-1", "apple", 3, Decimal("1.50")),
        AddItem("o-1", "pear", 1, Decimal("2.00")),
        PayOrder("o-1", "card"),
        CreateOrder("o-2", "bob"),
        AddItem("o-2", "apple", 1, Decimal("1.50")),
        CreateOrder("o-3", "alice"),
        CancelOrder("o-3", "changed my mind"),
    )
    return ids[-1]


def test_an_order_with_its_lines_and_history_after_a_command(api: ApiServer, shop: str) -> None:
    answer = get(api, f"/api/orders/o-1?history=true&after_command={shop}")

    assert answer.status_code == 200, answer.text
    assert answer.headers["X-Orders-Consistency"] == "fresh"
    order = answer.json()
    assert (order["status"], order["total"], order["customer_id"]) == ("paid", "6.50", "alice")
    assert [(line["item_id"], line["quantity"]) for line in order["lines"]] == [
        ("apple", 3),
        ("pear", 1),
    ]
    assert [(e["event_type"], e["version"]) for e in order["events"]] == [
        ("OrderCreated", 1),
        ("ItemAdded", 2),
        ("ItemAdded", 3),
        ("OrderPaid", 4),
    ]
    assert [(c["command_type"], c["status"]) for c in order["commands"]] == [
        ("CreateOrder", "accepted"),
        ("AddItem", "accepted"),
        ("AddItem", "accepted"),
        ("PayOrder", "accepted"),
    ]
    assert answer.headers["X-Orders-Lag-Events"] == "0"
    assert "/" in answer.headers["X-Orders-Checkpoint"]


def test_read_your_writes_waits_for_the_read_models_then_says_stale(
    start_worker: Callable[..., WorkerProcess],
    client: CommandClient,
    worker_env: dict[str, str],
) -> None:
    # Only a commands worker: nothing keeps the read models, so the wait runs out.
    start_worker(queues="orders.commands")
    server = ApiServer({**worker_env, "ORDERS_API_CONSISTENCY_WAIT": "0.5"}).wait_ready()
    try:
        [command_id] = sent(client, CreateOrder("o-late", "carol"))
        answer = get(server, f"/api/orders?after_command={command_id}")
    finally:
        server.stop()

    assert answer.status_code == 200
    assert answer.headers["X-Orders-Consistency"] == "stale"
    assert answer.json()["orders"] == []  # what the read model holds, stale as it is
    assert int(answer.headers["X-Orders-Lag-Events"]) >= 1


def test_a_list_pages_by_keyset_newest_first_with_filters(api: ApiServer, shop: str) -> None:
    first = get(api, f"/api/orders?limit=2&after_command={shop}").json()
    second = get(api, f"/api/orders?limit=2&cursor={first['next']}").json()

    assert [o["order_id"] for o in first["orders"]] == ["o-3", "o-2"]
    assert [o["order_id"] for o in second["orders"]] == ["o-1"]
    assert second["next"] is None
    paid = get(api, "/api/orders?status=paid").json()["orders"]
    alices = get(api, "/api/orders?customer=alice").json()["orders"]
    assert [o["order_id"] for o in paid] == ["o-1"]
    assert [o["order_id"] for o in alices] == ["o-3", "o-1"]
    created = first["orders"][1]["created_at"]
    since = get(api, f"/api/orders?since={created.replace('+', '%2B')}").json()["orders"]
    assert [o["order_id"] for o in since] == ["o-3", "o-2"]


def test_the_figures_endpoints(api: ApiServer, shop: str) -> None:
    get(api, f"/api/orders/o-3?after_command={shop}")

    customers = get(api, "/api/customers?top=1").json()["customers"]
    by_units = get(api, "/api/products/top?by=units").json()["products"]
    by_revenue = get(api, "/api/products/top?by=revenue&limit=1").json()["products"]
    days = get(api, "/api/revenue/daily?days=7").json()["days"]
    projections = get(api, "/api/projections").json()["projections"]

    assert [(c["customer_id"], c["lifetime_value"]) for c in customers] == [("alice", "6.50")]
    assert [(p["item_id"], p["units_sold"]) for p in by_units] == [("apple", 3), ("pear", 1)]
    assert [p["item_id"] for p in by_revenue] == ["apple"]
    assert [(d["orders_paid"], d["revenue"]) for d in days] == [(1, "6.50")]
    assert {p["projection"] for p in projections} == {
        "order_summary",
        "order_lines",
        "customer_stats",
        "product_sales",
        "revenue_daily",
    }
    assert all(not p["stuck"] and p["parked"] == 0 for p in projections)


def test_lists_and_summaries_answer_304_while_nothing_changed(api: ApiServer, shop: str) -> None:
    for path in (f"/api/orders?after_command={shop}", "/api/orders/o-1"):
        first = get(api, path)
        again = get(api, path, **{"If-None-Match": first.headers["ETag"]})
        assert first.status_code == 200
        assert again.status_code == 304
        assert again.headers["ETag"] == first.headers["ETag"]


def test_errors_are_json_with_a_code(api: ApiServer) -> None:
    unknown = get(api, "/api/orders/no-such-order")
    bad_limit = get(api, "/api/orders?limit=0")
    bad_cursor = get(api, "/api/orders?cursor=not-a-cursor")
    bad_by = get(api, "/api/products/top?by=colour")

    assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "UnknownOrder")
    for answer in (bad_limit, bad_cursor, bad_by):
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"]["code"] == "BadParameter"


def test_an_unreachable_database_is_503(worker_env: dict[str, str]) -> None:
    away = {**worker_env, "ORDERS_DATABASE_URL": "postgresql+psycopg2://postgres@127.0.0.1:1/x"}
    server = ApiServer(away).wait_ready()
    try:
        answer = get(server, "/api/orders")
    finally:
        server.stop()

    assert answer.status_code == 503
    assert answer.json()["error"]["code"] == "DatabaseUnavailable"


def test_with_a_token_every_api_request_needs_it(worker_env: dict[str, str]) -> None:
    token = uuid.uuid4().hex
    server = ApiServer({**worker_env, "ORDERS_API_TOKEN": token}).wait_ready()
    try:
        without = get(server, "/api/orders")
        wrong = get(server, "/api/orders", Authorization="Bearer " + "x" * 32)
        right = get(server, "/api/orders", Authorization=f"Bearer {token}")
        command = httpx.post(f"{server.url}/api/commands", json={}, timeout=10)
        ready_without = get(server, "/api/ready")
        ready_with = get(server, "/api/ready", Authorization=f"Bearer {token}")
    finally:
        server.stop()

    # Readiness stays open to orchestrators, but only the token shows the details, which
    # name the database's and the broker's hosts and users.
    assert ready_without.status_code == ready_with.status_code == 200
    assert ready_without.json() == {
        "status": "ok",
        "checks": [{"name": "database", "state": "ok"}, {"name": "broker", "state": "ok"}],
    }
    user = make_url(worker_env["ORDERS_DATABASE_URL"]).username
    assert user and user not in ready_without.text
    assert user in ready_with.text
    assert [check["name"] for check in ready_with.json()["checks"]] == ["database", "broker"]
    assert all(check["detail"] for check in ready_with.json()["checks"])
    assert (without.status_code, without.json()["error"]["code"]) == (401, "Unauthorized")
    assert without.headers["WWW-Authenticate"] == "Bearer"
    assert wrong.status_code == 401
    assert right.status_code == 200
    assert command.status_code == 401


@pytest.fixture
def second_database(postgres_url: str) -> Iterator[str]:
    """Another migrated database, standing in for a replica with its own rows."""
    name = f"{make_url(postgres_url).database}_read"
    admin = create_engine(
        make_url(postgres_url).set(database="postgres"), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
    engine = build_engine(url)
    migrate(engine)
    engine.dispose()
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def test_reads_go_to_the_read_database_when_one_is_set(
    worker_env: dict[str, str], second_database: str, pg: Engine
) -> None:
    row: dict[str, Any] = {
        "order_id": "only-on-the-read-side",
        "customer_id": "dora",
        "status": "created",
        "item_count": 0,
        "units": 0,
        "total": Decimal("0.00"),
        "version": 1,
        "created_at": "2026-01-01T00:00:00+00:00",
        "updated_at": "2026-01-01T00:00:00+00:00",
    }
    reads = build_engine(second_database)
    with reads.begin() as conn:
        conn.execute(order_summary.insert().values(row))
    reads.dispose()
    server = ApiServer({**worker_env, "ORDERS_READ_DATABASE_URL": second_database}).wait_ready()
    try:
        listed = get(server, "/api/orders").json()["orders"]
    finally:
        server.stop()

    assert [order["order_id"] for order in listed] == ["only-on-the-read-side"]


def test_with_a_token_a_browser_logs_in_once_for_the_pages(worker_env: dict[str, str]) -> None:
    token = uuid.uuid4().hex
    server = ApiServer({**worker_env, "ORDERS_API_TOKEN": token}).wait_ready()
    try:
        with httpx.Client(base_url=server.url, timeout=10) as browser:
            before = browser.get("/")
            wrong = browser.post("/login", data={"token": "x" * 32})
            logged = browser.post("/login", data={"token": token})
            after = browser.get("/")
            api = browser.get("/api/orders")
    finally:
        server.stop()

    assert (before.status_code, before.headers["Location"]) == (303, "/login")
    assert wrong.status_code == 401
    assert logged.status_code == 303
    assert after.status_code == 200 and "Newest orders" in after.text
    assert api.status_code == 200  # the cookie serves the page's own reads too


def test_the_page_and_the_api_serve_the_demos_embedded_database(tmp_path: Path) -> None:
    # No servers at all: the demo's SQLite file, as a newcomer has it after `make demo`.
    embedded = {"ORDERS_DATABASE_URL": f"sqlite:///{tmp_path / 'orders.db'}"}
    assert orders("demo", env=embedded, cwd=tmp_path).returncode == 0
    server = ApiServer(embedded).wait_ready()
    try:
        page = get(server, "/")
        order = get(server, "/orders/order-001")
        listed = get(server, "/api/orders").json()["orders"]
        refused = httpx.post(f"{server.url}/api/commands", json={}, timeout=10)
    finally:
        server.stop()

    assert page.status_code == 200
    assert 'data-order="order-001"' in page.text
    assert order.status_code == 200 and "OrderPaid" in order.text
    assert [row["order_id"] for row in listed] == ["order-001"]
    # Embedded has no broker another process can reach: commands go through the demo.
    assert (refused.status_code, refused.json()["error"]["code"]) == (503, "NoBroker")
