"""The Order's state and how events change it (``evolve``).

Evolving never checks rules: replaying old events must not fail because a rule changed
since they were recorded. Rules live in ``decide``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Literal

from domain.events import Event, ItemAdded, ItemRemoved, OrderCancelled, OrderCreated, OrderPaid

Status = Literal["not_created", "created", "paid", "cancelled"]


@dataclass(frozen=True, slots=True)
class Line:
    quantity: int
    unit_price: Decimal

    @property
    def amount(self) -> Decimal:
        return self.quantity * self.unit_price


@dataclass(frozen=True)
class Order:
    order_id: str
    customer_id: str | None = None
    status: Status = "not_created"
    lines: Mapping[str, Line] = field(default_factory=dict)
    version: int = 0
    payment_method: str | None = None
    cancel_reason: str | None = None

    @property
    def total(self) -> Decimal:
        return sum((line.amount for line in self.lines.values()), Decimal("0.00"))

    def __str__(self) -> str:
        # The walkthrough's representation, which the demo reproduces.
        return (
            f"Order(id={self.order_id}, customer={self.customer_id}, items={len(self.lines)}, "
            f"total=${self.total:.2f}, status={self.status}, version={self.version})"
        )


def evolve(order: Order, event: Event) -> Order:
    """The state after ``event``."""
    match event:
        case OrderCreated(customer_id=customer_id):
            return replace(order, customer_id=customer_id, status="created", version=event.version)
        case ItemAdded(item_id=item_id, quantity=quantity, price=price):
            current = order.lines.get(item_id)
            line = Line(quantity + (current.quantity if current else 0), price)
            return replace(order, lines={**order.lines, item_id: line}, version=event.version)
        case ItemRemoved(item_id=item_id):
            lines = {key: line for key, line in order.lines.items() if key != item_id}
            return replace(order, lines=lines, version=event.version)
        case OrderPaid(payment_method=method):
            return replace(order, status="paid", payment_method=method, version=event.version)
        case OrderCancelled(reason=reason):
            return replace(order, status="cancelled", cancel_reason=reason, version=event.version)
    raise TypeError(f"evolve does not know {type(event).__name__}")


def fold(order: Order, events: Iterable[Event]) -> Order:
    for event in events:
        order = evolve(order, event)
    return order
