"""Stored events of every schema version load as today's domain events."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from commands import AddItem, CancelOrder, CreateOrder, PayOrder, RemoveItem
from domain.decide import decide
from domain.errors import MalformedEvent, UnknownEventType, UnknownSchemaVersion
from domain.events import EVENT_TYPES, Event, EventMetadata, ItemAdded, OrderCreated
from domain.order import Order, fold
from domain.upcasting import UPCASTERS, StoredEvent, event_from_stored, events_from_stored, upcaster

REGISTERED_BY_THE_CODE = dict(UPCASTERS)
AT = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
ENVELOPE: dict[str, Any] = {
    "aggregate_id": "order-001",
    "version": 2,
    "event_id": "4b7e1a0c-5a3e-5f5e-9d1e-2f1b8a9c0d11",
    "timestamp": AT,
    "metadata": {"command_id": "c1", "correlation_id": "c0", "causation_id": "c1"},
}


def load(event_type: str, schema_version: int, data: Any) -> Event:
    return event_from_stored(
        event_type=event_type, schema_version=schema_version, data=data, **ENVELOPE
    )


@pytest.fixture
def restore_upcasters() -> Iterator[None]:
    """Upcasters registered by a test are gone after it."""
    saved = dict(UPCASTERS)
    try:
        yield
    finally:
        UPCASTERS.clear()
        UPCASTERS.update(saved)


# -- version 1: the walkthrough's float prices --------------------------------------------


def test_walkthrough_v1_item_added_loads_with_exact_price() -> None:
    event = load("ItemAdded", 1, {"item_id": "apple", "quantity": 3, "price": 1.5})

    assert isinstance(event, ItemAdded)
    assert (event.item_id, event.quantity) == ("apple", 3)
    assert event.price == Decimal("1.50")
    assert str(event.price) == "1.50"


def test_loaded_event_keeps_its_envelope() -> None:
    event = load("ItemAdded", 1, {"item_id": "apple", "quantity": 3, "price": 1.5})

    assert event.aggregate_id == "order-001"
    assert event.version == 2
    assert event.event_id == ENVELOPE["event_id"]
    assert event.timestamp == AT
    assert event.metadata == EventMetadata(command_id="c1", correlation_id="c0", causation_id="c1")


@pytest.mark.parametrize(
    ("stored", "expected"),
    [(0.1, "0.10"), (0.75, "0.75"), (19.99, "19.99"), (2, "2.00"), (0.0, "0.00")],
)
def test_v1_float_price_becomes_the_price_the_producer_meant(stored: float, expected: str) -> None:
    event = load("ItemAdded", 1, {"item_id": "apple", "quantity": 1, "price": stored})

    assert str(event.price) == expected  # type: ignore[attr-defined]


def test_stored_data_is_not_changed_by_upcasting() -> None:
    data = {"item_id": "apple", "quantity": 3, "price": 1.5}

    load("ItemAdded", 1, data)

    assert data == {"item_id": "apple", "quantity": 3, "price": 1.5}


# -- current versions pass through -------------------------------------------------------


def _walkthrough_events() -> list[Event]:
    order, events = Order("order-001"), []
    for command in (
        CreateOrder("order-001", customer_id="customer-123"),
        AddItem("order-001", item_id="apple", quantity=3, price="1.50"),
        RemoveItem("order-001", item_id="apple"),
        AddItem("order-001", item_id="banana", quantity=2, price="0.75"),
        PayOrder("order-001", payment_method="credit_card"),
    ):
        new = decide(order, command, at=AT)
        events += new
        order = fold(order, new)
    cancelled = Order("order-002", status="created", version=1)
    return [*events, *decide(cancelled, CancelOrder("order-002", reason="too slow"), at=AT)]


@pytest.mark.parametrize("event", _walkthrough_events(), ids=lambda e: e.event_type)
def test_current_version_round_trips(event: Event) -> None:
    loaded = event_from_stored(
        event_type=event.event_type,
        schema_version=event.schema_version,
        data=event.data(),
        aggregate_id=event.aggregate_id,
        version=event.version,
        event_id=event.event_id,
        timestamp=event.timestamp,
        metadata=event.metadata.to_dict(),
    )

    assert loaded == event


def test_missing_metadata_loads_as_empty_metadata() -> None:
    event = event_from_stored(
        event_type="OrderCreated",
        schema_version=1,
        data={"customer_id": "customer-123", "status": "created"},
        **{**ENVELOPE, "metadata": None},
    )

    assert event.metadata == EventMetadata()


# -- what cannot be loaded ---------------------------------------------------------------


def test_unknown_event_type_is_refused() -> None:
    with pytest.raises(UnknownEventType) as raised:
        load("OrderShipped", 1, {})

    assert raised.value.event_type == "OrderShipped"


@pytest.mark.parametrize(
    ("event_type", "schema_version"),
    [("ItemAdded", 3), ("OrderCreated", 2), ("ItemAdded", 0), ("OrderPaid", 0), ("ItemAdded", -1)],
)
def test_unknown_schema_version_is_refused(event_type: str, schema_version: int) -> None:
    with pytest.raises(UnknownSchemaVersion) as raised:
        load(event_type, schema_version, {"item_id": "apple", "quantity": 3, "price": "1.50"})

    assert raised.value.schema_version == schema_version


@pytest.mark.parametrize(
    ("event_type", "schema_version", "data"),
    [
        ("OrderCreated", 1, {"status": "created"}),
        ("ItemAdded", 2, {"item_id": "apple", "quantity": 3}),
        ("ItemAdded", 2, {"item_id": "apple", "quantity": "x", "price": "1.50"}),
        ("ItemAdded", 2, {"item_id": "apple", "quantity": 3, "price": "one fifty"}),
        ("ItemAdded", 1, {"item_id": "apple", "quantity": "x", "price": 1.5}),
        ("ItemRemoved", 1, {}),
        ("OrderPaid", 1, None),
        ("OrderCancelled", 1, {"status": "cancelled"}),
    ],
)
def test_malformed_data_is_refused(event_type: str, schema_version: int, data: Any) -> None:
    with pytest.raises(MalformedEvent) as raised:
        load(event_type, schema_version, data)

    assert raised.value.event_type == event_type


@pytest.mark.parametrize(
    "data",
    [
        {"item_id": "apple", "quantity": 3},
        {"item_id": "apple", "quantity": 3, "price": "x"},
        {"item_id": "apple", "quantity": 3, "price": 1e30},
        {"item_id": "apple", "quantity": 3, "price": float("nan")},
        {"item_id": "apple", "quantity": 2.7, "price": 1.5},
    ],
    ids=["missing-price", "price-not-a-number", "price-too-large", "price-nan", "quantity-float"],
)
def test_malformed_v1_item_added_is_refused(data: dict[str, Any]) -> None:
    with pytest.raises(MalformedEvent):
        load("ItemAdded", 1, data)


# -- registering upcasters ---------------------------------------------------------------


def test_upcaster_decorator_registers_and_returns_the_function(restore_upcasters: None) -> None:
    def step(data: dict[str, Any]) -> dict[str, Any]:
        return data

    assert upcaster("OrderCreated", from_version=1)(step) is step
    assert UPCASTERS[("OrderCreated", 1)] is step


def test_registered_upcaster_brings_an_old_shape_up(
    restore_upcasters: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(OrderCreated, "schema_version", 2)

    @upcaster("OrderCreated", from_version=1)
    def _renamed_customer(data: dict[str, Any]) -> dict[str, Any]:
        return {"customer_id": data["customer"], "status": data["status"]}

    event = load("OrderCreated", 1, {"customer": "customer-123", "status": "created"})
    current = load("OrderCreated", 2, {"customer_id": "customer-123", "status": "created"})

    assert isinstance(event, OrderCreated)
    assert event.customer_id == "customer-123"
    assert current == event


def test_upcasters_chain_from_oldest_to_current(
    restore_upcasters: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ItemAdded, "schema_version", 3)
    seen: list[dict[str, Any]] = []

    @upcaster("ItemAdded", from_version=2)
    def _v2_to_v3(data: dict[str, Any]) -> dict[str, Any]:
        seen.append(data)
        return data

    event = load("ItemAdded", 1, {"item_id": "apple", "quantity": 3, "price": 1.5})

    assert seen == [{"item_id": "apple", "quantity": 3, "price": "1.50"}]
    assert event.price == Decimal("1.50")  # type: ignore[attr-defined]


def test_missing_step_in_the_chain_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ItemAdded, "schema_version", 3)

    with pytest.raises(UnknownSchemaVersion) as raised:
        load("ItemAdded", 2, {"item_id": "apple", "quantity": 3, "price": "1.50"})

    assert raised.value.schema_version == 2


def test_no_upcaster_leaked_from_other_tests() -> None:
    assert UPCASTERS == REGISTERED_BY_THE_CODE
    assert ("ItemAdded", 1) in UPCASTERS


# -- how events are built from the store ---------------------------------------------------


@pytest.mark.parametrize("cls", list(EVENT_TYPES.values()), ids=list(EVENT_TYPES))
def test_building_an_event_from_the_store_is_building_it_by_its_constructor(
    cls: type[Event],
) -> None:
    # events_from_stored fills an event's __dict__ without calling __init__ (a replay's
    # worth of speed). That is only the same thing while an event keeps its fields in a
    # __dict__ and does nothing in __init__ but set them: no __slots__, no
    # __post_init__, no field with a default factory. This fails when that changes, so
    # the shortcut is revisited instead of building events that skipped a check.
    assert "__slots__" not in vars(cls), f"{cls.__name__} has __slots__"
    assert not hasattr(cls, "__post_init__"), f"{cls.__name__} validates in __post_init__"
    for spec in dataclasses.fields(cls):
        assert spec.default_factory is dataclasses.MISSING, (cls.__name__, spec.name)
    sample = next(e for e in _walkthrough_events() if type(e) is cls)
    built = cls(
        aggregate_id="order-001",
        version=2,
        event_id="e-1",
        timestamp=datetime(2026, 1, 1, tzinfo=UTC),
        metadata=EventMetadata("c-1", "r-1", "c-1"),
        **cls.payload(sample.data()),
    )
    stored = StoredEvent(
        cls.event_type,
        cls.schema_version,
        built.data(),
        2,
        "e-1",
        datetime(2026, 1, 1, tzinfo=UTC),
        EventMetadata("c-1", "r-1", "c-1"),
    )

    [loaded] = events_from_stored("order-001", [stored])

    assert loaded == built
    assert type(loaded) is cls
    assert vars(loaded) == vars(built)
