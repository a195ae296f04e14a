"""Dashboard queries on both backends, exact money in the database, and the CLI's JSON."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Column, Engine, Integer, MetaData, Table, func, select

from readmodels import queries
from readmodels.queries import (
    BadCursor,
    list_orders,
    revenue,
    show_order,
    to_json,
    top_customers,
    top_products,
)
from store.money import Money
from tests.support.cli import orders
from tests.support.commands import add, create, pay
from tests.support.readmodels import PHASES, System

# What PHASES (tests/support/readmodels.py) leave behind: the clock starts at
# 2024-05-01 22:00 UTC and moves 7 minutes per command, so o1 and o2 are paid on May 1
# and o4 and o5 after midnight, on May 2.
NEWEST_FIRST = ["o7", "o6", "o5", "o4", "o3", "o2", "o1"]
MAY_1, MAY_2 = date(2024, 5, 1), date(2024, 5, 2)


@pytest.fixture
def shop(engine: Engine) -> System:
    system = System(engine)
    for phase in PHASES:
        system.send(*phase)
    system.catch_up()
    return system


def ids(rows: list[dict[str, Any]]) -> list[str]:
    return [row["order_id"] for row in rows]


def assert_exact(value: Any, expected: str) -> None:
    assert isinstance(value, Decimal), type(value)
    assert str(value) == expected


# -- show_order ---------------------------------------------------------------------------


def test_show_order_gives_the_summary_with_its_lines_or_none(shop: System) -> None:
    with shop.engine.connect() as conn:
        order = show_order(conn, "o1")

    assert order is not None
    assert order["lines"] == [
        {"item_id": "apple", "quantity": 3, "unit_price": Decimal("1.50")},
        {"item_id": "banana", "quantity": 2, "unit_price": Decimal("0.75")},
    ]
    assert (order["order_id"], order["customer_id"], order["status"]) == ("o1", "alice", "paid")
    assert (order["item_count"], order["units"], order["version"]) == (2, 5, 4)
    assert_exact(order["total"], "6.00")
    assert order["payment_method"] == "credit_card"
    assert order["created_at"] == datetime(2024, 5, 1, 22, 7, tzinfo=UTC)
    assert order["paid_at"] == datetime(2024, 5, 1, 23, 3, tzinfo=UTC)
    assert order["created_at"].utcoffset() == timedelta(0)
    assert order["cancelled_at"] is None

    with shop.engine.connect() as conn:
        cancelled = show_order(conn, "o3")
        empty = show_order(conn, "o7")
        missing = show_order(conn, "o404")

    assert cancelled is not None and empty is not None
    assert (cancelled["status"], cancelled["cancel_reason"]) == ("cancelled", "too expensive")
    assert cancelled["cancelled_at"] is not None
    assert [line["item_id"] for line in cancelled["lines"]] == ["apple", "caviar"]
    assert empty["lines"] == []
    assert (empty["item_count"], empty["units"]) == (0, 0)
    assert_exact(empty["total"], "0.00")
    assert missing is None
    assert_money_is_exact_through_the_read_model(shop)


def assert_money_is_exact_through_the_read_model(shop: System) -> None:
    """o2 is 3 x 0.10 + 0.20: exactly 0.50 in every table it reaches."""
    with shop.engine.connect() as conn:
        o2 = show_order(conn, "o2")
        bob = next(c for c in top_customers(conn) if c["customer_id"] == "bob")
        dime = next(p for p in top_products(conn) if p["item_id"] == "dime")

    assert o2 is not None
    assert_exact(o2["total"], "0.50")
    assert_exact(o2["lines"][0]["unit_price"], "0.10")
    assert_exact(bob["lifetime_value"], "0.50")
    assert_exact(dime["revenue"], "0.30")
    assert to_json(o2)["total"] == "0.50"


# -- list_orders --------------------------------------------------------------------------


def test_list_orders_newest_first_and_filtered(shop: System) -> None:
    with shop.engine.connect() as conn:
        page = list_orders(conn)

    assert ids(page.rows) == NEWEST_FIRST
    assert page.next_cursor is None
    created = [row["created_at"] for row in page.rows]
    assert created == sorted(created, reverse=True)
    assert_filters_by_status_and_customer(shop)


FILTERS: list[tuple[dict[str, str], list[str]]] = [
    ({"status": "paid"}, ["o5", "o4", "o2", "o1"]),
    ({"status": "cancelled"}, ["o3"]),
    ({"status": "created"}, ["o7", "o6"]),
    ({"customer_id": "alice"}, ["o3", "o1"]),
    ({"customer_id": "alice", "status": "paid"}, ["o1"]),
    ({"customer_id": "nobody"}, []),
]


def assert_filters_by_status_and_customer(shop: System) -> None:
    with shop.engine.connect() as conn:
        found = [(filters, list_orders(conn, **filters)) for filters, _ in FILTERS]
        paged = all_pages(conn, limit=1, status="paid")

    for (filters, page), (_, expected) in zip(found, FILTERS, strict=True):
        assert ids(page.rows) == expected, filters
        assert page.next_cursor is None
    assert paged == ["o5", "o4", "o2", "o1"]  # pages within the filter


def all_pages(conn: Any, limit: int, **filters: Any) -> list[str]:
    seen: list[str] = []
    cursor = None
    for _ in range(100):
        page = list_orders(conn, limit=limit, after=cursor, **filters)
        assert len(page.rows) <= limit
        seen += ids(page.rows)
        if page.next_cursor is None:
            return seen
        assert len(page.rows) == limit
        cursor = page.next_cursor
    pytest.fail("paging did not end")


@pytest.fixture
def many(engine: Engine) -> System:
    """Twelve orders, four of them created in the same microsecond (the keyset's
    tie-breaker, the order id, must keep them apart across pages)."""
    system = System(engine)
    for n in range(4):
        system.send(create(f"early-{n:02}", "alice"))
    system.clock()  # a gap, then four orders in the same microsecond
    system.clock.step = timedelta(0)
    for n in range(4):
        system.send(create(f"tie-{n:02}", "bob"))
    system.clock.step = timedelta(minutes=1)
    for n in range(4):
        system.send(create(f"late-{n:02}", "carol"))
    system.catch_up()
    return system


EXPECTED_MANY = [
    *(f"late-{n:02}" for n in (3, 2, 1, 0)),
    *(f"tie-{n:02}" for n in (3, 2, 1, 0)),
    *(f"early-{n:02}" for n in (3, 2, 1, 0)),
]


def test_pages_cover_every_order_once_in_order(many: System) -> None:
    with many.engine.connect() as conn:
        seen = {limit: all_pages(conn, limit) for limit in (1, 3, 5, 6, 11, 12, 13)}
        cursor = list_orders(conn, limit=2).next_cursor

    for limit, ordered in seen.items():
        assert ordered == EXPECTED_MANY, limit
    assert cursor is not None
    assert cursor.isascii() and "=" not in cursor and " " not in cursor  # opaque, URL-safe


def test_pages_are_stable_when_orders_arrive_or_change_between_them(many: System) -> None:
    with many.engine.connect() as conn:
        first = list_orders(conn, limit=5)
    assert ids(first.rows) == EXPECTED_MANY[:5]
    assert first.next_cursor is not None

    many.send(create("newer-1", "dave"), create("newer-2", "dave"))
    many.send(add("early-01", "apple", 1, "1.00"), pay("early-01"))  # a later page's order
    many.catch_up()

    with many.engine.connect() as conn:
        second = list_orders(conn, limit=5, after=first.next_cursor)
        assert second.next_cursor is not None
        third = list_orders(conn, limit=5, after=second.next_cursor)
        everything = list_orders(conn, limit=100)

    assert ids(first.rows) + ids(second.rows) + ids(third.rows) == EXPECTED_MANY
    assert third.next_cursor is None
    assert ids(everything.rows)[:2] == ["newer-2", "newer-1"]  # they are on page one now
    paid = next(row for row in third.rows if row["order_id"] == "early-01")
    assert paid["status"] == "paid"


def encoded(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


BAD_CURSORS = [
    "garbage",
    "!!!",
    "",
    "é",
    encoded(5),
    encoded(["not a time", "o1"]),
    encoded(["2024-05-01T00:00:00+00:00"]),
    encoded(["2024-05-01T00:00:00+00:00", "o1", "extra"]),
    encoded([12, "o1"]),
    encoded({"created_at": "2024-05-01T00:00:00+00:00"}),
    base64.urlsafe_b64encode(b"\xff\xfe\x00").decode(),
]


def test_foreign_cursors_and_limits_out_of_bounds_are_refused(shop: System) -> None:
    with shop.engine.connect() as conn:
        for cursor in BAD_CURSORS:
            with pytest.raises(BadCursor, match="not a cursor"):
                list_orders(conn, after=cursor)
    assert_limits_are_bounded(shop)


def test_a_bad_cursor_is_a_value_error() -> None:
    assert issubclass(BadCursor, ValueError)


def assert_limits_are_bounded(shop: System) -> None:
    with shop.engine.connect() as conn:
        for limit in (0, -1, queries.MAX_LIMIT + 1):
            with pytest.raises(ValueError, match="limit must be between 1 and 1000"):
                list_orders(conn, limit=limit)
            with pytest.raises(ValueError, match="limit must be between"):
                top_products(conn, limit=limit)
            with pytest.raises(ValueError, match="limit must be between"):
                top_customers(conn, limit=limit)
        one = list_orders(conn, limit=1)
        most = list_orders(conn, limit=queries.MAX_LIMIT)

    assert ids(one.rows) == ["o7"]
    assert one.next_cursor is not None
    assert ids(most.rows) == NEWEST_FIRST
    assert most.next_cursor is None


# -- top products, revenue, top customers -------------------------------------------------


def test_top_products_and_customers_by_the_value_of_paid_orders(shop: System) -> None:
    with shop.engine.connect() as conn:
        top = top_products(conn)
        top_two = top_products(conn, limit=2)

    assert [(p["item_id"], str(p["revenue"]), p["units_sold"], p["orders_count"]) for p in top] == [
        ("banana", "9.00", 12, 2),
        ("apple", "4.50", 3, 1),
        ("pear", "2.25", 1, 1),
        ("dime", "0.30", 3, 1),
        ("fifth", "0.20", 1, 1),
    ]  # no caviar: its order was cancelled
    assert top_two == top[:2]
    for product in top:
        assert isinstance(product["revenue"], Decimal)

    with shop.engine.connect() as conn:
        top = top_customers(conn)
        first = top_customers(conn, limit=1)

    assert [
        (
            c["customer_id"],
            str(c["lifetime_value"]),
            c["orders_created"],
            c["orders_paid"],
            c["orders_cancelled"],
        )
        for c in top
    ] == [
        ("dave", "7.50", 1, 1, 0),
        ("alice", "6.00", 2, 1, 1),
        ("carol", "2.25", 1, 1, 0),
        ("bob", "0.50", 1, 1, 0),
        # Ties in value by customer id, the last first: the index is read backwards,
        # so the dashboard's top list needs no sort (EXPLAIN in test_query_plans.py).
        ("frank", "0.00", 1, 0, 0),
        ("erin", "0.00", 1, 0, 0),
    ]
    assert first == top[:1]
    assert all(c["last_order_at"].utcoffset() == timedelta(0) for c in top)


def test_revenue_per_utc_day(shop: System) -> None:
    with shop.engine.connect() as conn:
        both = revenue(conn, days=2, today=MAY_2)
        last = revenue(conn, days=1, today=MAY_2)
        month = revenue(conn, days=31, today=date(2024, 5, 31))
        thirty = revenue(conn, days=30, today=date(2024, 5, 31))
        nothing = revenue(conn, days=7, today=date(2024, 6, 30))
        no_days = revenue(conn, days=0, today=MAY_2)

    assert [(r["day"], r["orders_paid"], str(r["revenue"])) for r in both] == [
        (MAY_1, 2, "6.50"),
        (MAY_2, 2, "9.75"),
    ]
    assert last == both[1:]
    assert month == both
    assert thirty == both[1:]
    assert nothing == []
    assert no_days == last  # at least one day


def test_revenue_ends_at_today(engine: Engine) -> None:
    system = System(engine)  # o1 paid at 23:00 UTC on May 1, o2 at midnight
    system.clock.step = timedelta(minutes=20)
    system.send(create("o1", "alice"), add("o1", "apple", 1, "1.00"), pay("o1"))
    system.send(create("o2", "alice"), add("o2", "apple", 1, "1.00"), pay("o2"))
    system.catch_up()

    with engine.connect() as conn:
        both = revenue(conn, days=2, today=MAY_2)
        rows = revenue(conn, days=1, today=MAY_1)
    assert [(r["day"], str(r["revenue"])) for r in both] == [(MAY_1, "1.00"), (MAY_2, "1.00")]

    assert [r["day"] for r in rows] == [MAY_1]


# -- Money in the database ----------------------------------------------------------------

AMOUNTS = [
    "0.00",
    "0.01",
    "0.10",
    "0.20",
    "1.50",
    "6.00",
    "99.99",
    "-12.34",
    "1000000.00",
    "999999999999.99",
]


@pytest.fixture
def money_table(engine: Engine) -> Iterator[Table]:
    table = Table(
        "money_probe",
        MetaData(),
        Column("id", Integer, primary_key=True, autoincrement=False),
        Column("amount", Money),
    )
    with engine.begin() as conn:
        table.drop(conn, checkfirst=True)
        table.create(conn)
    try:
        yield table
    finally:
        with engine.begin() as conn:
            table.drop(conn, checkfirst=True)


def test_money_round_trips_exactly(engine: Engine, money_table: Table) -> None:
    with engine.begin() as conn:
        conn.execute(
            money_table.insert(),
            [{"id": n, "amount": Decimal(text)} for n, text in enumerate(AMOUNTS)]
            + [{"id": 100, "amount": None}],
        )
    with engine.connect() as conn:
        loaded = dict(conn.execute(select(money_table.c.id, money_table.c.amount)).all())

    assert loaded.pop(100) is None
    assert [str(loaded[n]) for n in range(len(AMOUNTS))] == AMOUNTS
    assert all(isinstance(value, Decimal) for value in loaded.values())


def test_money_is_stored_as_cents_on_sqlite_and_numeric_on_postgresql(
    engine: Engine, money_table: Table
) -> None:
    with engine.begin() as conn:
        conn.execute(money_table.insert(), {"id": 1, "amount": Decimal("1.50")})
        raw = conn.exec_driver_sql("SELECT amount FROM money_probe").scalar_one()

    if engine.dialect.name == "sqlite":
        assert raw == 150
    else:
        assert raw == Decimal("1.50")


def test_money_sums_and_comparisons_in_sql_are_exact(engine: Engine, money_table: Table) -> None:
    with engine.begin() as conn:
        conn.execute(
            money_table.insert(),
            [
                {"id": 1, "amount": Decimal("0.10")},
                {"id": 2, "amount": Decimal("0.10")},
                {"id": 3, "amount": Decimal("0.10")},
                {"id": 4, "amount": Decimal("0.20")},
            ],
        )
    with engine.connect() as conn:
        total = conn.execute(select(func.sum(money_table.c.amount))).scalar_one()
        dimes = conn.execute(
            select(func.count()).where(money_table.c.amount == Decimal("0.10"))
        ).scalar_one()
        over = conn.execute(
            select(money_table.c.id).where(money_table.c.amount > Decimal("0.15"))
        ).scalars()

    assert_exact(total, "0.50")
    assert dimes == 3
    assert list(over) == [4]


# -- the command line ---------------------------------------------------------------------


def test_orders_list_json_after_the_demo(tmp_path: Path) -> None:
    demo = orders("demo", cwd=tmp_path)
    assert demo.returncode == 0, demo.stderr

    listed = orders("list", "--json", cwd=tmp_path)

    assert listed.returncode == 0, listed.stderr
    data = json.loads(listed.stdout)
    assert data["next_cursor"] is None
    [order] = data["orders"]
    assert order["order_id"] == "order-001"
    assert order["total"] == "6.00"
    assert (order["status"], order["item_count"], order["units"]) == ("paid", 2, 5)
    assert datetime.fromisoformat(order["created_at"]).utcoffset() == timedelta(0)

    bad = orders("list", "--after", "garbage", cwd=tmp_path)
    assert bad.returncode == 2
    assert "not a cursor from this system" in bad.stderr
    assert "Traceback" not in bad.stderr
