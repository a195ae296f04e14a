"""One row per order: what a dashboard lists and filters on."""

from __future__ import annotations

from domain.events import Event, OrderCancelled, OrderPaid
from domain.order import Order
from readmodels.projections.base import Changes, Key, Projection, Rows
from readmodels.tables import order_summary


def keys(event: Event, order: Order) -> list[Key]:
    return [(order.order_id,)]


def apply(event: Event, order: Order, rows: Rows) -> Changes:
    key = (order.order_id,)
    before = rows.get(key) or {}
    at = event.timestamp
    return {
        key: {
            "order_id": order.order_id,
            "customer_id": order.customer_id,
            "status": order.status,
            "item_count": len(order.lines),
            "units": sum(line.quantity for line in order.lines.values()),
            "total": order.total,
            "version": order.version,
            "created_at": before.get("created_at", at),
            "updated_at": at,
            "paid_at": at if isinstance(event, OrderPaid) else before.get("paid_at"),
            "cancelled_at": at if isinstance(event, OrderCancelled) else before.get("cancelled_at"),
            "payment_method": order.payment_method,
            "cancel_reason": order.cancel_reason,
        }
    }


PROJECTION = Projection("order_summary", order_summary, keys, apply)
