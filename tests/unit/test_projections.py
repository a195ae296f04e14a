"""Each projection's pure ``keys``/``apply``: given commands, when their events are
projected (with the Order each one leaves behind), then these rows.

``project`` plays the runner's part in memory: for every event it asks ``keys`` which
rows the event touches, hands ``apply`` exactly those rows, and writes back what it
returns (``None`` deletes the row).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from commands import Command
from domain.decide import decide
from domain.events import Event, ItemAdded, ItemRemoved, OrderCancelled, OrderCreated, OrderPaid
from domain.order import Order, evolve
from readmodels.projections import (
    PROJECTIONS,
    customer_stats,
    order_lines,
    order_summary,
    product_sales,
    revenue_daily,
)
from readmodels.projections.base import Key, Projection, Row
from tests.support.commands import add, cancel, create, pay, remove

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
MINUTE = timedelta(minutes=1)

# -- given / when ---------------------------------------------------------------------------


@dataclass
class History:
    """Orders decided command by command; every event with the Order right after it."""

    orders: dict[str, Order] = field(default_factory=dict)
    steps: list[tuple[Event, Order]] = field(default_factory=list)
    clock: datetime = T0

    def given(self, *commands: Command, at: datetime | None = None) -> list[Event]:
        decided: list[Event] = []
        for command in commands:
            when = at or self.tick()
            order = self.orders.get(command.order_id) or Order(command.order_id)
            for event in decide(order, command, at=when):
                order = evolve(order, event)
                self.steps.append((event, order))
                decided.append(event)
            self.orders[command.order_id] = order
        return decided

    def tick(self) -> datetime:
        self.clock += MINUTE
        return self.clock


def project(
    projection: Projection,
    steps: Iterable[tuple[Event, Order]],
    rows: dict[Key, Row] | None = None,
) -> dict[Key, Row]:
    """The rows after projecting ``steps``, as the runner would leave them."""
    table: dict[Key, Row] = dict(rows or {})
    for event, order in steps:
        keys = list(projection.keys(event, order))
        given = {key: (dict(table[key]) if key in table else None) for key in keys}
        changes = projection.apply(event, order, given)
        assert set(changes) <= set(keys), "apply touched a row keys did not name"
        for key, row in changes.items():
            if row is None:
                table.pop(key, None)
            else:
                assert projection.key_of(row) == key, "a row's primary key differs from its key"
                assert set(row) == {c.name for c in projection.table.columns}
                table[key] = row
    return table


def money(text: str) -> Decimal:
    return Decimal(text)


def assert_exact(value: Any, expected: str) -> None:
    """An exact Decimal with the expected digits, not a float that merely compares equal."""
    assert isinstance(value, Decimal), type(value)
    assert value == Decimal(expected)
    assert str(value) == expected


# -- the registry -------------------------------------------------------------------------


def test_every_projection_is_registered_under_its_own_name_and_table() -> None:
    assert set(PROJECTIONS) == {
        "order_summary",
        "order_lines",
        "customer_stats",
        "product_sales",
        "revenue_daily",
    }
    for name, projection in PROJECTIONS.items():
        assert projection.name == name
        assert projection.table.name == name


# -- order_summary ------------------------------------------------------------------------


def test_order_summary_after_creation() -> None:
    history = History()
    history.given(create("o1", "customer-7"))

    rows = project(order_summary.PROJECTION, history.steps)

    created_at = T0 + MINUTE
    assert rows == {
        ("o1",): {
            "order_id": "o1",
            "customer_id": "customer-7",
            "status": "created",
            "item_count": 0,
            "units": 0,
            "total": Decimal("0.00"),
            "version": 1,
            "created_at": created_at,
            "updated_at": created_at,
            "paid_at": None,
            "cancelled_at": None,
            "payment_method": None,
            "cancel_reason": None,
        }
    }


def test_order_summary_counts_distinct_lines_units_and_an_exact_total() -> None:
    history = History()
    history.given(
        create("o1"),
        add("o1", "apple", 3, "1.50"),
        add("o1", "banana", 2, "0.75"),
        add("o1", "apple", 2, "1.50"),  # merges into the apple line
    )

    row = project(order_summary.PROJECTION, history.steps)[("o1",)]

    assert row["item_count"] == 2
    assert row["units"] == 7
    assert_exact(row["total"], "9.00")
    assert row["version"] == 4
    assert row["status"] == "created"
    assert row["created_at"] == T0 + MINUTE  # kept from the first event
    assert row["updated_at"] == T0 + 4 * MINUTE


def test_order_summary_total_is_exact_where_floats_are_not() -> None:
    history = History()
    history.given(create("o1"), add("o1", "dime", 3, "0.10"), add("o1", "fifth", 1, "0.20"))

    row = project(order_summary.PROJECTION, history.steps)[("o1",)]

    assert 0.10 + 0.10 + 0.10 != 0.30  # the reason money is never a float
    assert_exact(row["total"], "0.50")


def test_order_summary_after_removing_a_line() -> None:
    history = History()
    history.given(
        create("o1"),
        add("o1", "apple", 3, "1.50"),
        add("o1", "banana", 2, "0.75"),
        remove("o1", "apple"),
    )

    row = project(order_summary.PROJECTION, history.steps)[("o1",)]

    assert (row["item_count"], row["units"], row["version"]) == (1, 2, 4)
    assert_exact(row["total"], "1.50")


def test_order_summary_keeps_created_at_from_a_row_it_did_not_write() -> None:
    """``created_at`` comes from the stored row, not the event: the first event may have
    been projected long before (in another run)."""
    history = History()
    history.given(create("o1"))
    first = project(order_summary.PROJECTION, history.steps)
    history.steps.clear()
    history.given(add("o1", "apple", 1, "2.00"))

    row = project(order_summary.PROJECTION, history.steps, first)[("o1",)]

    assert row["created_at"] == T0 + MINUTE
    assert row["updated_at"] == T0 + 2 * MINUTE


def test_order_summary_when_paid() -> None:
    history = History()
    history.given(create("o1"), add("o1", "apple", 3, "1.50"))
    paid_at = datetime(2024, 5, 1, 18, 30, tzinfo=UTC)
    history.given(pay("o1", "debit_card"), at=paid_at)

    row = project(order_summary.PROJECTION, history.steps)[("o1",)]

    assert row["status"] == "paid"
    assert row["paid_at"] == paid_at
    assert row["updated_at"] == paid_at
    assert row["payment_method"] == "debit_card"
    assert row["cancelled_at"] is None
    assert row["cancel_reason"] is None
    assert row["version"] == 3
    assert_exact(row["total"], "4.50")


def test_order_summary_when_cancelled() -> None:
    history = History()
    history.given(create("o1"), add("o1", "apple", 1, "1.50"))
    cancelled_at = datetime(2024, 5, 2, 9, 0, tzinfo=UTC)
    history.given(cancel("o1", "out of stock"), at=cancelled_at)

    row = project(order_summary.PROJECTION, history.steps)[("o1",)]

    assert row["status"] == "cancelled"
    assert row["cancelled_at"] == cancelled_at
    assert row["cancel_reason"] == "out of stock"
    assert row["paid_at"] is None
    assert row["payment_method"] is None


def test_order_summary_keys_every_event_by_its_order() -> None:
    history = History()
    events = history.given(create("o1"), add("o1", "apple", 1, "1.00"), pay("o1"))

    for event, order in history.steps:
        assert order_summary.keys(event, order) == [("o1",)]
    assert len(events) == 3


# -- order_lines --------------------------------------------------------------------------


def test_order_lines_added_merged_and_removed() -> None:
    history = History()
    history.given(create("o1"), add("o1", "apple", 3, "1.50"), add("o1", "banana", 2, "0.75"))
    rows = project(order_lines.PROJECTION, history.steps)
    assert rows == {
        ("o1", "apple"): {
            "order_id": "o1",
            "item_id": "apple",
            "quantity": 3,
            "unit_price": Decimal("1.50"),
        },
        ("o1", "banana"): {
            "order_id": "o1",
            "item_id": "banana",
            "quantity": 2,
            "unit_price": Decimal("0.75"),
        },
    }

    history.steps.clear()
    history.given(add("o1", "apple", 4, "1.50"))
    rows = project(order_lines.PROJECTION, history.steps, rows)
    assert rows[("o1", "apple")]["quantity"] == 7

    history.steps.clear()
    history.given(remove("o1", "banana"))
    rows = project(order_lines.PROJECTION, history.steps, rows)
    assert set(rows) == {("o1", "apple")}


def test_order_lines_removal_is_a_delete() -> None:
    history = History()
    history.given(create("o1"), add("o1", "apple", 1, "1.00"))
    [event] = history.given(remove("o1", "apple"))
    order = history.orders["o1"]

    assert isinstance(event, ItemRemoved)
    assert order_lines.keys(event, order) == [("o1", "apple")]
    assert order_lines.apply(event, order, {("o1", "apple"): {"quantity": 1}}) == {
        ("o1", "apple"): None
    }


def test_order_lines_ignore_events_that_do_not_change_lines() -> None:
    history = History()
    history.given(create("o1"), add("o1", "apple", 1, "1.00"), pay("o1"))
    history.given(create("o2"), cancel("o2"))

    for event, order in history.steps:
        if not isinstance(event, ItemAdded | ItemRemoved):
            assert order_lines.keys(event, order) == []
            assert order_lines.apply(event, order, {}) == {}


def test_order_lines_of_different_orders_are_separate_rows() -> None:
    history = History()
    history.given(create("o1"), create("o2"), add("o1", "apple", 1, "1.00"))
    history.given(add("o2", "apple", 5, "1.00"))

    rows = project(order_lines.PROJECTION, history.steps)

    assert {key: row["quantity"] for key, row in rows.items()} == {
        ("o1", "apple"): 1,
        ("o2", "apple"): 5,
    }


# -- customer_stats -----------------------------------------------------------------------


def test_customer_stats_counts_orders_and_values_only_paid_ones() -> None:
    history = History()
    history.given(
        create("paid", "alice"),
        add("paid", "apple", 3, "1.50"),
        add("paid", "banana", 2, "0.75"),
        pay("paid"),
        create("cancelled", "alice"),
        add("cancelled", "caviar", 1, "99.99"),
        cancel("cancelled"),
        create("open", "alice"),
        add("open", "fig", 10, "10.00"),
        create("other", "bob"),
        add("other", "apple", 1, "1.50"),
        pay("other"),
    )

    rows = project(customer_stats.PROJECTION, history.steps)

    alice = rows[("alice",)]
    assert (alice["orders_created"], alice["orders_paid"], alice["orders_cancelled"]) == (3, 1, 1)
    assert_exact(alice["lifetime_value"], "6.00")
    bob = rows[("bob",)]
    assert (bob["orders_created"], bob["orders_paid"], bob["orders_cancelled"]) == (1, 1, 0)
    assert_exact(bob["lifetime_value"], "1.50")
    assert set(rows) == {("alice",), ("bob",)}


def test_customer_stats_last_order_at_is_the_latest_creation() -> None:
    history = History()
    late, early = datetime(2024, 5, 3, tzinfo=UTC), datetime(2024, 5, 2, tzinfo=UTC)
    history.given(create("o1", "alice"), at=late)
    history.given(create("o2", "alice"), at=early)  # recorded later, stamped earlier
    history.given(add("o1", "apple", 1, "1.00"), pay("o1"))

    row = project(customer_stats.PROJECTION, history.steps)[("alice",)]

    assert row["last_order_at"] == late
    assert row["orders_created"] == 2


def test_customer_stats_ignore_item_events() -> None:
    history = History()
    history.given(create("o1", "alice"), add("o1", "apple", 1, "1.00"), remove("o1", "apple"))

    for event, order in history.steps:
        expected = [("alice",)] if isinstance(event, OrderCreated) else []
        assert customer_stats.keys(event, order) == expected
        if not expected:
            assert customer_stats.apply(event, order, {}) == {}


def test_customer_stats_lifetime_value_uses_the_total_when_paid() -> None:
    """Lines removed before payment do not count; the Order after OrderPaid decides."""
    history = History()
    history.given(
        create("o1", "alice"),
        add("o1", "apple", 3, "0.10"),
        add("o1", "caviar", 1, "500.00"),
        remove("o1", "caviar"),
        add("o1", "pear", 1, "0.20"),
        pay("o1"),
    )

    row = project(customer_stats.PROJECTION, history.steps)[("alice",)]

    assert_exact(row["lifetime_value"], "0.50")


# -- product_sales ------------------------------------------------------------------------


def test_product_sales_count_only_paid_orders() -> None:
    history = History()
    history.given(
        create("o1"),
        add("o1", "apple", 3, "1.50"),
        add("o1", "banana", 2, "0.75"),
        create("o2"),
        add("o2", "apple", 1, "1.50"),
        create("o3"),
        add("o3", "apple", 100, "1.50"),
        cancel("o3"),
        create("o4"),
        add("o4", "apple", 50, "1.50"),  # never paid
    )
    assert project(product_sales.PROJECTION, history.steps) == {}

    history.given(pay("o1"), pay("o2"))
    rows = project(product_sales.PROJECTION, history.steps)

    assert set(rows) == {("apple",), ("banana",)}
    apple, banana = rows[("apple",)], rows[("banana",)]
    assert (apple["units_sold"], apple["orders_count"]) == (4, 2)
    assert_exact(apple["revenue"], "6.00")
    assert (banana["units_sold"], banana["orders_count"]) == (2, 1)
    assert_exact(banana["revenue"], "1.50")


def test_product_sales_keys_are_the_paid_orders_lines() -> None:
    history = History()
    history.given(
        create("o1"),
        add("o1", "apple", 1, "1.00"),
        add("o1", "pear", 1, "2.00"),
        add("o1", "fig", 1, "3.00"),
        remove("o1", "pear"),
    )
    [paid] = history.given(pay("o1"))

    assert isinstance(paid, OrderPaid)
    assert sorted(product_sales.keys(paid, history.orders["o1"])) == [("apple",), ("fig",)]
    for event, order in history.steps[:-1]:
        assert product_sales.keys(event, order) == []
        assert product_sales.apply(event, order, {}) == {}


def test_product_sales_revenue_is_exact() -> None:
    history = History()
    for n in range(10):
        history.given(create(f"o{n}"), add(f"o{n}", "dime", 1, "0.10"), pay(f"o{n}"))

    row = project(product_sales.PROJECTION, history.steps)[("dime",)]

    assert_exact(row["revenue"], "1.00")
    assert (row["units_sold"], row["orders_count"]) == (10, 10)


# -- revenue_daily ------------------------------------------------------------------------


def test_revenue_daily_counts_paid_orders_by_utc_day() -> None:
    history = History()
    history.given(create("o1"), add("o1", "apple", 2, "1.50"))
    history.given(pay("o1"), at=datetime(2024, 5, 1, 10, 0, tzinfo=UTC))
    history.given(create("o2"), add("o2", "apple", 1, "0.10"))
    history.given(pay("o2"), at=datetime(2024, 5, 1, 23, 59, 59, tzinfo=UTC))
    history.given(create("o3"), add("o3", "apple", 1, "0.20"))
    history.given(pay("o3"), at=datetime(2024, 5, 2, 0, 0, tzinfo=UTC))

    rows = project(revenue_daily.PROJECTION, history.steps)

    assert rows == {
        (date(2024, 5, 1),): {
            "day": date(2024, 5, 1),
            "orders_paid": 2,
            "revenue": Decimal("3.10"),
        },
        (date(2024, 5, 2),): {
            "day": date(2024, 5, 2),
            "orders_paid": 1,
            "revenue": Decimal("0.20"),
        },
    }


def test_revenue_daily_an_evening_payment_west_of_utc_counts_for_the_next_utc_day() -> None:
    new_york = timezone(timedelta(hours=-5))
    history = History()
    history.given(create("o1"), add("o1", "apple", 3, "0.10"), add("o1", "fig", 1, "0.20"))
    [paid] = history.given(pay("o1"), at=datetime(2024, 5, 1, 23, 30, tzinfo=new_york))

    assert revenue_daily.keys(paid, history.orders["o1"]) == [(date(2024, 5, 2),)]
    rows = project(revenue_daily.PROJECTION, history.steps)
    assert list(rows) == [(date(2024, 5, 2),)]
    assert_exact(rows[(date(2024, 5, 2),)]["revenue"], "0.50")


def test_revenue_daily_ignores_everything_but_payments() -> None:
    history = History()
    history.given(create("o1"), add("o1", "apple", 1, "1.00"), remove("o1", "apple"))
    history.given(create("o2"), add("o2", "apple", 1, "1.00"), cancel("o2"))

    for event, order in history.steps:
        assert isinstance(event, OrderCreated | ItemAdded | ItemRemoved | OrderCancelled)
        assert revenue_daily.keys(event, order) == []
    assert project(revenue_daily.PROJECTION, history.steps) == {}


@pytest.mark.parametrize("name", sorted(PROJECTIONS))
def test_apply_does_not_mutate_the_rows_it_is_given(name: str) -> None:
    projection = PROJECTIONS[name]
    history = History()
    history.given(create("o1", "alice"), add("o1", "apple", 1, "1.00"))
    rows = project(projection, history.steps)
    history.steps.clear()
    history.given(add("o1", "apple", 1, "1.00"), pay("o1"), create("o2", "alice"))

    for event, order in history.steps:
        keys = projection.keys(event, order)
        given = {key: rows.get(key) for key in keys}
        frozen = {key: dict(row) if row else row for key, row in given.items()}
        changes = projection.apply(event, order, given)
        assert given == frozen, "apply changed its input rows in place"
        for key, row in changes.items():
            if row is None:
                rows.pop(key, None)
            else:
                rows[key] = row
