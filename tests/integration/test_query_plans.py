"""Every query the dashboards' endpoints run is answered from an index at 100,000 orders.

The read models are filled straight with SQL, as ``orders bench --api`` fills them
(100,000 orders, 200,000 lines, 10,000 customers, 2,000 products, a year of days), with
200,000 events and 100,000 commands for the orders' histories, analysed, and each endpoint's query is
captured as SQLAlchemy sends it, then EXPLAINed: no sequential scan of a table that
grows with the orders, and no sort of a whole one.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, event, text

from benchmarks.api import fill
from readmodels import queries

ORDERS = 100_000
HISTORIES = [
    """
    INSERT INTO events (event_id, aggregate_type, aggregate_id, version, event_type,
                        schema_version, data, metadata, recorded_at)
    SELECT gen_random_uuid(), 'Order', 'order-' || n, v, 'OrderCreated', 1,
           '{"customer_id": "c"}', '{}', now()
    FROM generate_series(1, :orders) AS n, generate_series(1, 2) AS v
    """,
    """
    INSERT INTO command_log (command_id, command_type, aggregate_id, status, outcome,
                             recorded_at)
    SELECT gen_random_uuid()::text, 'CreateOrder', 'order-' || n, 'accepted', '{}', now()
    FROM generate_series(1, :orders) AS n
    """,
]
TABLES = (
    "order_summary, order_lines, customer_stats, product_sales, revenue_daily, events, command_log"
)
GROWING = (
    "order_summary",
    "order_lines",
    "customer_stats",
    "product_sales",
    "events",
    "command_log",
)


@pytest.fixture(scope="module")
def filled(postgres_engine: Engine, postgres_url: str) -> Iterator[Engine]:
    with postgres_engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {TABLES}"))
        for statement in HISTORIES:
            conn.execute(text(statement), {"orders": ORDERS})
    # The read models as the API benchmark fills them; it analyses the tables after.
    fill(postgres_url, ORDERS)
    yield postgres_engine
    with postgres_engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {TABLES}"))


@contextmanager
def captured(conn: Connection) -> Iterator[list[tuple[str, Any]]]:
    seen: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        seen.append((statement, parameters))

    event.listen(conn, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(conn, "before_cursor_execute", record)


def cursor_of(conn: Connection) -> str:
    page = queries.list_orders(conn, limit=20)
    assert page.next_cursor
    return page.next_cursor


WEEK_AGO = datetime.now(UTC) - timedelta(days=7)
ENDPOINTS: dict[str, Callable[[Connection], Any]] = {
    "GET /api/orders": lambda c: queries.list_orders(c, limit=50),
    "GET /api/orders?cursor": lambda c: queries.list_orders(c, limit=50, after=cursor_of(c)),
    "GET /api/orders?status": lambda c: queries.list_orders(c, status="paid", limit=50),
    "GET /api/orders?customer": lambda c: queries.list_orders(c, customer_id="customer-7"),
    "GET /api/orders?since&until": lambda c: queries.list_orders(
        c, since=WEEK_AGO, until=datetime.now(UTC), limit=50
    ),
    "GET /api/orders/{id}": lambda c: queries.show_order(c, "order-4242"),
    "GET /api/orders/{id}?history": lambda c: queries.order_history(c, "order-4242"),
    "GET /api/customers": lambda c: queries.top_customers(c, 10),
    "GET /api/products/top?by=revenue": lambda c: queries.top_products(c, 10, by="revenue"),
    "GET /api/products/top?by=units": lambda c: queries.top_products(c, 10, by="units"),
    "GET /api/revenue/daily": lambda c: queries.revenue(c, 30),
}


def plans(conn: Connection, run: Callable[[Connection], Any]) -> list[str]:
    with captured(conn) as seen:
        run(conn)
    assert seen, "the endpoint's query ran nothing"
    found = []
    for statement, parameters in seen:
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        cursor.execute("EXPLAIN " + statement, parameters)
        found.append("\n".join(row[0] for row in cursor.fetchall()))
        cursor.close()
    return found


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
def test_every_endpoint_query_reads_an_index(filled: Engine, endpoint: str) -> None:
    with filled.connect() as conn:
        for plan in plans(conn, ENDPOINTS[endpoint]):
            scanned = re.findall(r"Seq Scan on (\w+)", plan)
            assert not set(scanned) & set(GROWING), f"{endpoint}:\n{plan}"
            assert "Index" in plan or "revenue_daily" in plan, f"{endpoint}:\n{plan}"
            whole_sort = re.search(r"Sort .*\n.*Seq Scan", plan)
            assert whole_sort is None, f"{endpoint} sorts a whole table:\n{plan}"


def test_the_plans_would_show_a_missing_index(filled: Engine) -> None:
    # Proof that the test above can fail: without its index, the units list scans.
    with filled.begin() as conn:
        conn.execute(text("DROP INDEX product_sales_units"))
        [plan] = plans(conn, ENDPOINTS["GET /api/products/top?by=units"])
        conn.rollback()
    assert "Seq Scan on product_sales" in plan
