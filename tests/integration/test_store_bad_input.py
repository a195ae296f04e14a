"""Bad input never reaches the tables: commands refuse it, the store refuses broken batches."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import Engine

from commands import (
    AddItem,
    CancelOrder,
    Command,
    CreateOrder,
    InvalidCommand,
    Outcome,
    PayOrder,
    RemoveItem,
)
from domain.errors import (
    MalformedEvent,
    UnknownEventType,
    UnknownSchemaVersion,
    VersionConflict,
)
from domain.handler import CommandHandler, load_order
from store import SqlEventStore, open_event_store
from store.schema import events
from tests.support.events import created, item_added
from tests.support.ids import new_id
from tests.support.store import raw_event_row, row_counts

ORDER = "order-001"
HUGE = "x" * 10_240

GOOD: dict[type[Command], dict[str, Any]] = {
    CreateOrder: {"order_id": ORDER, "customer_id": "customer-123"},
    AddItem: {"order_id": ORDER, "item_id": "apple", "quantity": 3, "price": "1.50"},
    RemoveItem: {"order_id": ORDER, "item_id": "apple"},
    PayOrder: {"order_id": ORDER, "payment_method": "credit_card"},
    CancelOrder: {"order_id": ORDER, "reason": "changed my mind"},
}

BAD: list[tuple[type[Command], str, Any]] = [
    # quantity: wrong types, zero, negative, above the limit
    (AddItem, "quantity", 0),
    (AddItem, "quantity", -1),
    (AddItem, "quantity", -(2**63)),
    (AddItem, "quantity", 10_001),
    (AddItem, "quantity", 2**70),
    (AddItem, "quantity", "3"),
    (AddItem, "quantity", 3.0),
    (AddItem, "quantity", float("nan")),
    (AddItem, "quantity", float("inf")),
    (AddItem, "quantity", Decimal("3")),
    (AddItem, "quantity", True),
    (AddItem, "quantity", None),
    # price: NaN, infinities, floats, three decimals, negative, wrong types, too large
    (AddItem, "price", float("nan")),
    (AddItem, "price", float("inf")),
    (AddItem, "price", float("-inf")),
    (AddItem, "price", 1.5),
    (AddItem, "price", Decimal("NaN")),
    (AddItem, "price", Decimal("sNaN")),
    (AddItem, "price", Decimal("Infinity")),
    (AddItem, "price", Decimal("-Infinity")),
    (AddItem, "price", "NaN"),
    (AddItem, "price", "Infinity"),
    (AddItem, "price", "-inf"),
    (AddItem, "price", "1.505"),
    (AddItem, "price", Decimal("0.001")),
    (AddItem, "price", "1e-3"),
    (AddItem, "price", "-0.01"),
    (AddItem, "price", -1),
    (AddItem, "price", "1000000.01"),
    (AddItem, "price", "1e9"),
    (AddItem, "price", "9" * 40),
    (AddItem, "price", "abc"),
    (AddItem, "price", ""),
    (AddItem, "price", "1,50"),
    (AddItem, "price", None),
    (AddItem, "price", True),
    (AddItem, "price", [1]),
    # ids: empty, 10 kB, wrong types, spaces and control characters
    (AddItem, "order_id", ""),
    (AddItem, "order_id", HUGE),
    (AddItem, "order_id", "x" * 129),
    (AddItem, "order_id", 1),
    (AddItem, "order_id", None),
    (AddItem, "order_id", "order 001"),
    (AddItem, "order_id", "order-001\n"),
    (AddItem, "order_id", "order\x00001"),
    (AddItem, "order_id", "-order"),
    (AddItem, "order_id", "ordér"),
    (AddItem, "item_id", ""),
    (AddItem, "item_id", HUGE),
    (AddItem, "item_id", b"apple"),
    (CreateOrder, "customer_id", ""),
    (CreateOrder, "customer_id", HUGE),
    (CreateOrder, "customer_id", 123),
    (PayOrder, "payment_method", ""),
    (PayOrder, "payment_method", HUGE),
    (RemoveItem, "item_id", ""),
    (CancelOrder, "reason", ""),
    (CancelOrder, "reason", "   "),
    (CancelOrder, "reason", HUGE),
    (CancelOrder, "reason", "bad\x00reason"),
    (CancelOrder, "reason", 42),
    (AddItem, "command_id", ""),
    (AddItem, "command_id", HUGE),
    (AddItem, "command_id", "not-a-uuid"),
    (AddItem, "command_id", 12345),
    (AddItem, "correlation_id", ""),
    (AddItem, "correlation_id", HUGE),
    (AddItem, "expected_version", -1),
    (AddItem, "expected_version", 2**31),
    (AddItem, "expected_version", "1"),
    (AddItem, "expected_version", True),
    (AddItem, "expected_version", 1.0),
]


def case_id(case: tuple[type[Command], str, Any]) -> str:
    cls, name, value = case
    shown = repr(value)
    return f"{cls.__name__}.{name}={shown[:20]}{'...' if len(shown) > 20 else ''}"


def build(cls: type[Command], name: str, value: Any) -> Command:
    return cls(**{**GOOD[cls], name: value})


def test_the_good_commands_build() -> None:
    for cls, kwargs in GOOD.items():
        assert cls(**kwargs).order_id == ORDER
    assert AddItem(**GOOD[AddItem]).price == Decimal("1.50")


@pytest.mark.parametrize("case", BAD, ids=[case_id(case) for case in BAD])
def test_a_bad_field_cannot_even_be_built(case: tuple[type[Command], str, Any]) -> None:
    cls, name, value = case
    with pytest.raises(InvalidCommand) as invalid:
        build(cls, name, value)
    assert invalid.value.field == name


def test_no_bad_command_reaches_either_backend(engine: Engine) -> None:
    store = open_event_store(engine)
    handler = CommandHandler(store)
    assert handler.handle(CreateOrder(ORDER, customer_id="customer-123")).accepted
    assert handler.handle(AddItem(ORDER, item_id="apple", quantity=1, price="1.50")).accepted
    before = row_counts(engine)
    order = load_order(store, ORDER)

    for cls, name, value in BAD:
        with pytest.raises(InvalidCommand):
            handler.handle(build(cls, name, value))

    assert row_counts(engine) == before
    assert load_order(store, ORDER) == order


# -- raw bad data straight into the store -------------------------------------------------


@pytest.fixture
def store(engine: Engine) -> SqlEventStore:
    store = open_event_store(engine)
    store.append(ORDER, 0, [created(ORDER)])
    return store


BROKEN_BATCHES = {
    "gap": lambda: [item_added(ORDER, 3)],
    "gap-inside-the-batch": lambda: [item_added(ORDER, 2), item_added(ORDER, 4)],
    "same-version-twice": lambda: [item_added(ORDER, 2), item_added(ORDER, 2)],
    "out-of-order": lambda: [item_added(ORDER, 3), item_added(ORDER, 2)],
    "version-going-back": lambda: [item_added(ORDER, 1)],
    "other-aggregate": lambda: [item_added("order-002", 2)],
    "other-aggregate-later-in-batch": lambda: [item_added(ORDER, 2), item_added("order-002", 3)],
    "aggregate-id-differs-in-case": lambda: [item_added(ORDER.upper(), 2)],
}


@pytest.mark.parametrize("batch", BROKEN_BATCHES.values(), ids=BROKEN_BATCHES.keys())
def test_a_batch_that_leaves_a_gap_or_mixes_streams_is_refused(
    store: SqlEventStore, engine: Engine, batch: Any
) -> None:
    before = row_counts(engine)
    stored = store.load(ORDER)
    command_id = new_id()
    outcome = Outcome(status="accepted", command_id=command_id, order_id=ORDER, version=2)

    with pytest.raises(ValueError, match="does not follow"):
        store.append(ORDER, 1, batch(), command_type="AddItem", outcome=outcome)

    assert row_counts(engine) == before
    assert store.load(ORDER) == stored
    assert store.load("order-002") == []
    assert store.find_outcome(command_id) is None


def test_a_negative_expected_version_writes_nothing(store: SqlEventStore, engine: Engine) -> None:
    before = row_counts(engine)

    with pytest.raises((ValueError, VersionConflict)):
        store.append("order-002", -1, [item_added("order-002", 0)])

    assert row_counts(engine) == before
    assert store.load("order-002") == []


def insert_raw(engine: Engine, *rows: dict[str, Any]) -> None:
    with engine.begin() as conn:
        conn.execute(events.insert(), list(rows))


@pytest.mark.parametrize(
    ("row", "error"),
    [
        (raw_event_row(ORDER, 2, "OrderShipped", {"carrier": "ups"}), UnknownEventType),
        (raw_event_row(ORDER, 2, "", {}), UnknownEventType),
        (raw_event_row(ORDER, 2, "itemadded", {"item_id": "a"}), UnknownEventType),
        (
            raw_event_row(ORDER, 2, "ItemAdded", {"item_id": "a"}, schema_version=3),
            UnknownSchemaVersion,
        ),
        (raw_event_row(ORDER, 2, "OrderCreated", {}, schema_version=0), UnknownSchemaVersion),
        (
            raw_event_row(ORDER, 2, "ItemAdded", {"item_id": "a", "quantity": 1}, schema_version=2),
            MalformedEvent,
        ),
        (
            raw_event_row(
                ORDER,
                2,
                "ItemAdded",
                {"item_id": "a", "quantity": 1, "price": "x"},
                schema_version=2,
            ),
            MalformedEvent,
        ),
        (raw_event_row(ORDER, 2, "OrderPaid", ["credit_card"]), MalformedEvent),
    ],
    ids=[
        "unknown-type",
        "empty-type",
        "wrong-case-type",
        "future-schema",
        "schema-zero",
        "missing-field",
        "bad-price",
        "not-an-object",
    ],
)
def test_an_unreadable_stored_event_fails_loudly_and_nothing_is_written(
    store: SqlEventStore, engine: Engine, row: dict[str, Any], error: type[Exception]
) -> None:
    insert_raw(engine, {**row, "event_id": new_id()})
    before = row_counts(engine)
    handler = CommandHandler(store)
    command = AddItem(ORDER, item_id="apple", quantity=1, price="1.50")

    with pytest.raises(error):
        store.load(ORDER)
    with pytest.raises(error):
        load_order(store, ORDER)
    # The handler cannot decide on an order it cannot read: it records nothing either.
    with pytest.raises(error):
        handler.handle(command)

    assert row_counts(engine) == before
    assert store.find_outcome(command.command_id) is None
    assert [e.version for e in store.load(ORDER, after_version=2)] == []


def test_an_unknown_event_type_names_the_type(store: SqlEventStore, engine: Engine) -> None:
    insert_raw(engine, raw_event_row(ORDER, 2, "OrderShipped", {"carrier": "ups"}))

    with pytest.raises(UnknownEventType) as unknown:
        store.load(ORDER)

    assert unknown.value.event_type == "OrderShipped"
    assert "OrderShipped" in str(unknown.value)
