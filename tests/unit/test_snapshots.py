"""A snapshot gives back the Order it was taken of, or nothing if its schema is unknown."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from commands import AddItem, CancelOrder, Command, CreateOrder, PayOrder
from domain.decide import decide
from domain.order import Order, fold
from domain.snapshots import SNAPSHOT_SCHEMA_VERSION, Snapshot, restore, take_snapshot

ORDER = "order-001"
AT = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
CREATE = CreateOrder(ORDER, customer_id="customer-123")
APPLES = AddItem(ORDER, item_id="apple", quantity=3, price="1.50")
BANANAS = AddItem(ORDER, item_id="banana", quantity=2, price="0.75")


def given(*commands: Command) -> Order:
    order = Order(ORDER)
    for command in commands:
        order = fold(order, decide(order, command, at=AT))
    return order


ORDERS = {
    "new": Order(ORDER),
    "created": given(CREATE),
    "with-items": given(CREATE, APPLES, BANANAS),
    "paid": given(CREATE, APPLES, BANANAS, PayOrder(ORDER, payment_method="credit_card")),
    "cancelled": given(CREATE, APPLES, CancelOrder(ORDER, reason="changed my mind")),
}


@pytest.mark.parametrize("order", ORDERS.values(), ids=ORDERS.keys())
def test_restore_gives_back_the_order(order: Order) -> None:
    assert restore(take_snapshot(order)) == order


@pytest.mark.parametrize("order", ORDERS.values(), ids=ORDERS.keys())
def test_snapshot_state_survives_json(order: Order) -> None:
    snapshot = take_snapshot(order)
    stored = Snapshot(
        snapshot.aggregate_id,
        snapshot.version,
        snapshot.schema_version,
        json.loads(json.dumps(snapshot.state)),
    )

    assert restore(stored) == order


def test_snapshot_records_id_version_schema_and_exact_prices() -> None:
    snapshot = take_snapshot(ORDERS["paid"])

    assert (snapshot.aggregate_id, snapshot.version) == (ORDER, 4)
    assert snapshot.schema_version == SNAPSHOT_SCHEMA_VERSION
    assert snapshot.state["lines"]["apple"] == {"quantity": 3, "unit_price": "1.50"}


def test_restored_order_keeps_its_total_and_representation() -> None:
    restored = restore(take_snapshot(ORDERS["paid"]))

    assert restored is not None
    assert restored.total == Decimal("6.00")
    assert str(restored) == str(ORDERS["paid"])


@pytest.mark.parametrize("schema_version", [0, SNAPSHOT_SCHEMA_VERSION + 1, 99])
def test_snapshot_with_unknown_schema_restores_nothing(schema_version: int) -> None:
    snapshot = take_snapshot(ORDERS["paid"])
    unknown = Snapshot(ORDER, snapshot.version, schema_version, snapshot.state)

    assert restore(unknown) is None
