"""One row per item in an order, while it is in the order."""

from __future__ import annotations

from domain.events import Event, ItemAdded, ItemRemoved
from domain.order import Order
from readmodels.projections.base import Changes, Key, Projection, Rows
from readmodels.tables import order_lines


def keys(event: Event, order: Order) -> list[Key]:
    if isinstance(event, ItemAdded | ItemRemoved):
        return [(order.order_id, event.item_id)]
    return []


def apply(event: Event, order: Order, rows: Rows) -> Changes:
    changes: Changes = {}
    for key in keys(event, order):
        line = order.lines.get(key[1])
        changes[key] = (
            None
            if line is None
            else {
                "order_id": key[0],
                "item_id": key[1],
                "quantity": line.quantity,
                "unit_price": line.unit_price,
            }
        )
    return changes


PROJECTION = Projection("order_lines", order_lines, keys, apply)
