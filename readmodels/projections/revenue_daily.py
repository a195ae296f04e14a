"""Per UTC day: orders paid and their revenue."""

from __future__ import annotations

from datetime import UTC
from decimal import Decimal

from domain.events import Event, OrderPaid
from domain.order import Order
from readmodels.projections.base import Changes, Key, Projection, Rows
from readmodels.tables import revenue_daily


def keys(event: Event, order: Order) -> list[Key]:
    return [(event.timestamp.astimezone(UTC).date(),)] if isinstance(event, OrderPaid) else []


def apply(event: Event, order: Order, rows: Rows) -> Changes:
    changes: Changes = {}
    for key in keys(event, order):
        row = dict(rows.get(key) or {"day": key[0], "orders_paid": 0, "revenue": Decimal("0.00")})
        row["orders_paid"] += 1
        row["revenue"] += order.total
        changes[key] = row
    return changes


PROJECTION = Projection("revenue_daily", revenue_daily, keys, apply)
