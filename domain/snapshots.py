"""Snapshots of the Order's state, so long streams load without replaying every event.

A snapshot carries its own schema version. One this code does not know is ignored and
the stream is replayed, which is always correct, only slower.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from domain.order import Line, Order

SNAPSHOT_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Snapshot:
    aggregate_id: str
    version: int
    schema_version: int
    state: dict[str, Any]


def take_snapshot(order: Order) -> Snapshot:
    state = {
        "customer_id": order.customer_id,
        "status": order.status,
        "lines": {
            item_id: {"quantity": line.quantity, "unit_price": str(line.unit_price)}
            for item_id, line in order.lines.items()
        },
        "payment_method": order.payment_method,
        "cancel_reason": order.cancel_reason,
    }
    return Snapshot(order.order_id, order.version, SNAPSHOT_SCHEMA_VERSION, state)


def restore(snapshot: Snapshot) -> Order | None:
    """The Order the snapshot holds, or None when its schema version is not this code's."""
    if snapshot.schema_version != SNAPSHOT_SCHEMA_VERSION:
        return None
    state = snapshot.state
    return Order(
        order_id=snapshot.aggregate_id,
        customer_id=state["customer_id"],
        status=state["status"],
        lines={
            item_id: Line(int(line["quantity"]), Decimal(line["unit_price"]))
            for item_id, line in state["lines"].items()
        },
        version=snapshot.version,
        payment_method=state["payment_method"],
        cancel_reason=state["cancel_reason"],
    )
