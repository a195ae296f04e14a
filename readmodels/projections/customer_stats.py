"""Per customer: orders created, paid and cancelled, and the value of the paid ones."""

from __future__ import annotations

from decimal import Decimal

from domain.events import Event, OrderCancelled, OrderCreated, OrderPaid
from domain.order import Order
from readmodels.projections.base import Changes, Key, Projection, Rows
from readmodels.tables import customer_stats

COUNTED = (OrderCreated, OrderPaid, OrderCancelled)


def keys(event: Event, order: Order) -> list[Key]:
    return [(order.customer_id,)] if isinstance(event, COUNTED) else []


def apply(event: Event, order: Order, rows: Rows) -> Changes:
    if not isinstance(event, COUNTED):
        return {}
    key = (order.customer_id,)
    row = dict(rows.get(key) or _empty(order.customer_id, event))
    match event:
        case OrderCreated():
            row["orders_created"] += 1
            row["last_order_at"] = max(row["last_order_at"], event.timestamp)
        case OrderPaid():
            row["orders_paid"] += 1
            row["lifetime_value"] += order.total
        case OrderCancelled():
            row["orders_cancelled"] += 1
    return {key: row}


def _empty(customer_id: str | None, event: Event) -> dict[str, object]:
    return {
        "customer_id": customer_id,
        "orders_created": 0,
        "orders_paid": 0,
        "orders_cancelled": 0,
        "lifetime_value": Decimal("0.00"),
        "last_order_at": event.timestamp,
    }


PROJECTION = Projection("customer_stats", customer_stats, keys, apply)
