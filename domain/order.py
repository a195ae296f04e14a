"""The Order's state and how events change it (``evolve``).

Evolving never checks rules: replaying old events must not fail because a rule changed
since they were recorded. Rules live in ``decide``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cached_property
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

    @cached_property
    def total(self) -> Decimal:
        # Cached: several read models ask the same state for it.
        return sum((line.amount for line in self.lines.values()), Decimal("0.00"))

    def __str__(self) -> str:
        # The walkthrough's representation, which the demo reproduces.
        return (
            f"Order(id={self.order_id}, customer={self.customer_id}, items={len(self.lines)}, "
            f"total=${self.total:.2f}, status={self.status}, version={self.version})"
        )


def evolve(order: Order, event: Event) -> Order:
    """The state after ``event``."""
    return fold(order, (event,))


def fold(order: Order, events: Iterable[Event]) -> Order:
    """The state after ``events``, in order.

    Folds into a private mutable draft and freezes it once: copying the lines for every
    event would make replaying a long order quadratic.
    """
    draft = _Draft(
        order.customer_id,
        order.status,
        dict(order.lines),
        order.version,
        order.payment_method,
        order.cancel_reason,
    )
    for event in events:
        draft.apply(event)
    return Order(
        order.order_id,
        draft.customer_id,
        draft.status,
        draft.lines,
        draft.version,
        draft.payment_method,
        draft.cancel_reason,
    )


@dataclass(slots=True)
class _Draft:
    customer_id: str | None
    status: Status
    lines: dict[str, Line]
    version: int
    payment_method: str | None
    cancel_reason: str | None

    def apply(self, event: Event) -> None:
        match event:
            case OrderCreated(customer_id=customer_id):
                self.customer_id, self.status = customer_id, "created"
            case ItemAdded(item_id=item_id, quantity=quantity, price=price):
                current = self.lines.get(item_id)
                self.lines[item_id] = Line(quantity + (current.quantity if current else 0), price)
            case ItemRemoved(item_id=item_id):
                self.lines.pop(item_id, None)
            case OrderPaid(payment_method=method):
                self.status, self.payment_method = "paid", method
            case OrderCancelled(reason=reason):
                self.status, self.cancel_reason = "cancelled", reason
            case _:
                raise TypeError(f"evolve does not know {type(event).__name__}")
        self.version = event.version
