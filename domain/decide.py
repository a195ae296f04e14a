"""Decisions: given the Order and a command, the events it causes or the rule it breaks.

Pure: the time is passed in, event ids are derived from the command id, so the same
command on the same state decides the same events.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from commands import AddItem, CancelOrder, Command, CreateOrder, PayOrder, RemoveItem
from commands.fields import MAX_QUANTITY
from domain.errors import (
    CannotCancelPaidOrder,
    ItemNotInOrder,
    NothingToPay,
    OrderAlreadyCancelled,
    OrderAlreadyExists,
    OrderAlreadyPaid,
    OrderNotFound,
    OrderNotOpen,
    PaymentAfterCancellation,
    PriceMismatch,
    QuantityLimitExceeded,
    TooManyLines,
)
from domain.events import (
    Event,
    EventMetadata,
    ItemAdded,
    ItemRemoved,
    OrderCancelled,
    OrderCreated,
    OrderPaid,
)
from domain.order import Order

_EVENT_ID_NAMESPACE = uuid.UUID("5b0c3f55-2b61-4e43-9a3b-1f0a7d0e6c11")
DEFAULT_MAX_LINES = 1_000


@dataclass(frozen=True)
class Limits:
    """Rules whose numbers a deployment sets (``ORDERS_MAX_LINES``).

    ``max_lines``: distinct items one order may hold. Every command on an order folds
    all its lines, and every read model change copies them: an order without a bound
    made each command four times slower at 10,000 lines and a projection process grow
    past a gigabyte.
    """

    max_lines: int = DEFAULT_MAX_LINES

    def __post_init__(self) -> None:
        if self.max_lines < 1:
            raise ValueError(f"max_lines must be at least 1, got {self.max_lines}")


def decide(
    order: Order, command: Command, *, at: datetime, limits: Limits = Limits()
) -> list[Event]:
    """The events ``command`` causes on ``order``; raises a ``DomainError`` if it breaks a rule."""
    if at.utcoffset() is None:
        # Checked here, where events are born, not on every event replayed from the store.
        raise ValueError(f"decide needs a timezone-aware time, got {at}")
    match command:
        case CreateOrder():
            if order.status != "not_created":
                raise OrderAlreadyExists(order.order_id)
            return _events(order, command, at, (OrderCreated, {"customer_id": command.customer_id}))
        case _ if order.status == "not_created":
            raise OrderNotFound(order.order_id)
        case AddItem():
            _require_open(order)
            current = order.lines.get(command.item_id)
            if current is None and len(order.lines) >= limits.max_lines:
                raise TooManyLines(order.order_id, command.item_id, limits.max_lines)
            if current is not None and current.unit_price != command.price:
                raise PriceMismatch(
                    order.order_id, command.item_id, current.unit_price, command.price
                )
            quantity = command.quantity + (current.quantity if current else 0)
            if quantity > MAX_QUANTITY:
                raise QuantityLimitExceeded(order.order_id, command.item_id, quantity, MAX_QUANTITY)
            payload = {
                "item_id": command.item_id,
                "quantity": command.quantity,
                "price": command.price,
            }
            return _events(order, command, at, (ItemAdded, payload))
        case RemoveItem():
            _require_open(order)
            if command.item_id not in order.lines:
                raise ItemNotInOrder(order.order_id, command.item_id)
            return _events(order, command, at, (ItemRemoved, {"item_id": command.item_id}))
        case PayOrder():
            if order.status == "cancelled":
                raise PaymentAfterCancellation(order.order_id)
            if order.status == "paid":
                raise OrderAlreadyPaid(order.order_id)
            if order.total <= 0:
                raise NothingToPay(order.order_id)
            payload = {"payment_method": command.payment_method}
            return _events(order, command, at, (OrderPaid, payload))
        case CancelOrder():
            if order.status == "paid":
                raise CannotCancelPaidOrder(order.order_id)
            if order.status == "cancelled":
                raise OrderAlreadyCancelled(order.order_id)
            return _events(order, command, at, (OrderCancelled, {"reason": command.reason}))
    raise TypeError(f"decide does not know {type(command).__name__}")


def _require_open(order: Order) -> None:
    if order.status != "created":
        raise OrderNotOpen(order.order_id, order.status)


def _events(
    order: Order, command: Command, at: datetime, *specs: tuple[type[Event], dict[str, Any]]
) -> list[Event]:
    metadata = EventMetadata(
        command_id=command.command_id,
        correlation_id=command.correlation_id or command.command_id,
        causation_id=command.command_id,
    )
    return [
        cls(
            aggregate_id=order.order_id,
            version=order.version + index,
            # Derived, not random: a command redecided after a conflict keeps its event ids.
            event_id=str(uuid.uuid5(_EVENT_ID_NAMESPACE, f"{command.command_id}/{index}")),
            timestamp=at,
            metadata=metadata,
            **payload,
        )
        for index, (cls, payload) in enumerate(specs, start=1)
    ]
