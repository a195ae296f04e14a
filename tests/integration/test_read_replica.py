"""Dashboards on a streaming replica: a private primary and a ``pg_basebackup -R``
standby of it, a real worker writing to the primary, and ``ORDERS_READ_DATABASE_URL``
pointing the CLI's queries and the API at the standby.

Replay on the standby is paused and resumed (``pg_wal_replay_pause()``) to show where
each answer comes from: an order the primary's read models hold is missing from every
answer until the standby replays it, ``?after_command=`` waits for that replay (and
says ``stale`` when its wait runs out first), and the standby's lag shows in ``orders
projections status`` and in the metrics meanwhile.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine, select, text

from bootstrap import migrate
from commands import AddItem, Command, CreateOrder
from commands.client import CommandClient
from readmodels.tables import order_summary
from store import build_engine
from tests.support.api_server import ApiServer
from tests.support.cli import orders
from tests.support.servers import PostgresServer
from tests.support.waiting import eventually
from tests.support.workers import WorkerProcess

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

CONSISTENCY_WAIT = 5.0  # what the API waits for ?after_command= before it says "stale"


@dataclass
class Replicated:
    primary_url: str
    replica_url: str
    primary: Engine
    replica: Engine

    def replay(self, paused: bool) -> None:
        call = "pg_wal_replay_pause()" if paused else "pg_wal_replay_resume()"
        with self.replica.connect() as conn:
            conn.execute(text(f"SELECT {call}"))

    def replayed_all(self) -> bool:
        """The standby has replayed everything the primary has written so far."""
        with self.primary.connect() as conn:
            written = conn.execute(text("SELECT pg_current_wal_lsn()::text")).scalar_one()
        with self.replica.connect() as conn:
            behind = conn.execute(
                text("SELECT pg_wal_lsn_diff(CAST(:lsn AS pg_lsn), pg_last_wal_replay_lsn())"),
                {"lsn": written},
            ).scalar_one()
        return bool(behind <= 0)


@pytest.fixture(scope="module")
def replicated() -> Iterator[Replicated]:
    primary = PostgresServer().create()
    replica = PostgresServer()
    engines: list[Engine] = []
    try:
        primary_url = primary.create_database("orders")
        replica.replicate(primary)
        replica_url = primary_url.replace(f":{primary.port}/", f":{replica.port}/")
        engines = [build_engine(primary_url), build_engine(replica_url)]
        migrate(engines[0])
        yield Replicated(primary_url, replica_url, *engines)
    finally:
        for engine in engines:
            engine.dispose()
        replica.remove()
        primary.remove()


@pytest.fixture
def env(replicated: Replicated, redis_url: str, broker: Any) -> dict[str, str]:
    """The system's settings: commands and projections on the primary, reads on the
    standby."""
    return {
        "ORDERS_DATABASE_URL": replicated.primary_url,
        "ORDERS_READ_DATABASE_URL": replicated.replica_url,
        "ORDERS_BROKER_URL": redis_url,
        "ORDERS_RESULT_BACKEND": redis_url,
        "ORDERS_API_CONSISTENCY_WAIT": str(CONSISTENCY_WAIT),
    }


@pytest.fixture
def api(env: dict[str, str]) -> Iterator[ApiServer]:
    server = ApiServer(env).wait_ready()
    yield server
    server.stop()


def send(client: CommandClient, command: Command) -> str:
    outcome = client.send(command).wait(timeout=30)
    assert outcome.status == "accepted", outcome
    return command.command_id


def projected(engine: Engine, order_id: str) -> bool:
    with engine.connect() as conn:
        query = select(order_summary.c.order_id).where(order_summary.c.order_id == order_id)
        return conn.execute(query).first() is not None


def status(env: dict[str, str]) -> list[dict[str, Any]]:
    result = orders("projections", "status", "--json", env=env)
    assert result.returncode == 0, result.stderr
    rows: list[dict[str, Any]] = json.loads(result.stdout)
    return rows


def health(env: dict[str, str]) -> dict[str, dict[str, str]]:
    """``orders health --json``, by check name; its exit code agrees with the worst."""
    result = orders("health", "--json", env=env)
    report = json.loads(result.stdout)
    assert result.returncode == {"ok": 0, "degraded": 1, "down": 2}[report["status"]]
    return {check["name"]: check for check in report["checks"]}


def replica_gauges(api: ApiServer) -> dict[str, float]:
    scraped = httpx.get(f"{api.url}/metrics", timeout=30).text
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(scraped)
        for sample in family.samples
        if sample.name.startswith("orders_read_replica_lag")
    }


def test_reads_come_from_the_replica_and_wait_for_its_replay(
    replicated: Replicated,
    env: dict[str, str],
    api: ApiServer,
    start_worker: Callable[..., WorkerProcess],
    client: CommandClient,
) -> None:
    start_worker({"ORDERS_DATABASE_URL": replicated.primary_url})
    send(client, CreateOrder("r-1", "alice"))
    assert eventually(lambda: projected(replicated.replica, "r-1"), bool)
    # Replayed and answered from the standby, by the CLI and the API alike.
    assert orders("show", "r-1", "--json", env=env).returncode == 0
    assert httpx.get(f"{api.url}/api/orders/r-1", timeout=30).status_code == 200
    with replicated.replica.connect() as conn:
        assert conn.execute(text("SELECT pg_is_in_recovery()")).scalar_one()

    replicated.replay(paused=True)
    try:
        send(client, CreateOrder("r-2", "bob"))
        command_id = send(client, AddItem("r-2", "apple", 2, Decimal("1.50")))
        assert eventually(lambda: projected(replicated.primary, "r-2"), bool)
        # The primary's read models have it; the answers, read on the standby, do not.
        shown = orders("show", "r-2", "--json", env=env)
        assert shown.returncode != 0 and "not in the read model" in shown.stderr
        listed = json.loads(orders("list", "--json", env=env).stdout)
        assert [row["order_id"] for row in listed["orders"]] == ["r-1"]
        assert httpx.get(f"{api.url}/api/orders/r-2", timeout=30).status_code == 404

        # Read-your-writes waits for the replay; past its wait it answers, saying stale.
        waited = httpx.get(
            f"{api.url}/api/orders", params={"after_command": command_id}, timeout=30
        )
        assert waited.status_code == 200
        assert waited.headers["X-Orders-Consistency"] == "stale"
        assert [row["order_id"] for row in waited.json()["orders"]] == ["r-1"]
        assert waited.elapsed.total_seconds() >= CONSISTENCY_WAIT - 0.5

        # The standby's lag shows, in the status and the metrics alike.
        rows = eventually(lambda: status(env), lambda rows: rows[0]["replica_lag_seconds"] > 0)
        assert all(row["replica_lag_bytes"] > 0 for row in rows), rows
        assert all(row["replica_lag_seconds"] > 0 for row in rows), rows
        gauges = replica_gauges(api)
        assert gauges["orders_read_replica_lag_bytes"] > 0, gauges
        assert gauges["orders_read_replica_lag_seconds"] > 0, gauges
        # And in `orders health`: degraded (1) once past the lag limit.
        lagging = health({**env, "ORDERS_MAX_LAG_SECONDS": "2"})
        assert lagging["read database"]["state"] == "degraded", lagging
        assert "behind (limit 2)" in lagging["read database"]["detail"]

        # A reader waiting for its command is answered once the standby replays it.
        answer: list[httpx.Response] = []
        reader = threading.Thread(
            target=lambda: answer.append(
                httpx.get(
                    f"{api.url}/api/orders/r-2", params={"after_command": command_id}, timeout=30
                )
            )
        )
        reader.start()
        reader.join(timeout=1.5)
        assert reader.is_alive(), "answered before the standby replayed the command"
    finally:
        replicated.replay(paused=False)
    reader.join(timeout=30)
    [fresh] = answer
    assert fresh.status_code == 200, fresh.text
    assert fresh.headers["X-Orders-Consistency"] == "fresh"
    assert fresh.json()["lines"][0]["item_id"] == "apple"

    # Caught up: no lag left.
    assert eventually(replicated.replayed_all, bool)
    rows = eventually(lambda: status(env), lambda rows: rows[0]["replica_lag_bytes"] == 0)
    assert {(row["replica_lag_seconds"], row["replica_lag_bytes"]) for row in rows} == {(0, 0)}
    caught_up = {"orders_read_replica_lag_seconds": 0.0, "orders_read_replica_lag_bytes": 0.0}
    assert eventually(lambda: replica_gauges(api), lambda gauges: gauges == caught_up) == caught_up
    assert health(env)["read database"]["state"] == "ok"


def test_without_a_replica_the_lag_reads_zero_and_status_has_no_replica_columns(
    replicated: Replicated, redis_url: str, broker: Any
) -> None:
    env = {"ORDERS_DATABASE_URL": replicated.primary_url, "ORDERS_BROKER_URL": redis_url}
    rows = status(env)
    assert rows and all("replica_lag_seconds" not in row for row in rows)
