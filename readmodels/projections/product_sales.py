"""Per item: units sold, revenue and orders, counting paid orders only."""

from __future__ import annotations

from decimal import Decimal

from domain.events import Event, OrderPaid
from domain.order import Order
from readmodels.projections.base import Changes, Key, Projection, Rows
from readmodels.tables import product_sales


def keys(event: Event, order: Order) -> list[Key]:
    return [(item_id,) for item_id in order.lines] if isinstance(event, OrderPaid) else []


def apply(event: Event, order: Order, rows: Rows) -> Changes:
    changes: Changes = {}
    for key in keys(event, order):
        line = order.lines[key[0]]
        row = dict(rows.get(key) or _empty(key[0]))
        row["units_sold"] += line.quantity
        row["revenue"] += line.amount
        row["orders_count"] += 1
        changes[key] = row
    return changes


def _empty(item_id: str) -> dict[str, object]:
    return {"item_id": item_id, "units_sold": 0, "revenue": Decimal("0.00"), "orders_count": 0}


PROJECTION = Projection("product_sales", product_sales, keys, apply)
