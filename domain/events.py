"""Order events: immutable facts, named by explicit strings that never change.

An event's ``event_type`` and ``schema_version`` are stored with it; a class may move
or be renamed without breaking replay. Payload fields keep the walkthrough's names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar

AGGREGATE_TYPE = "Order"


@dataclass(frozen=True, slots=True)
class EventMetadata:
    """Why the event exists: the command that caused it and the conversation it is part of."""

    command_id: str | None = None
    correlation_id: str | None = None
    causation_id: str | None = None

    def to_dict(self) -> dict[str, str]:
        fields = {
            "command_id": self.command_id,
            "correlation_id": self.correlation_id,
            "causation_id": self.causation_id,
        }
        return {key: value for key, value in fields.items() if value is not None}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EventMetadata:
        return cls(
            command_id=data.get("command_id"),
            correlation_id=data.get("correlation_id"),
            causation_id=data.get("causation_id"),
        )


@dataclass(frozen=True, kw_only=True)
class Event:
    """Fields every Order event has; subclasses add their payload."""

    event_type: ClassVar[str]
    schema_version: ClassVar[int] = 1
    aggregate_type: ClassVar[str] = AGGREGATE_TYPE

    aggregate_id: str
    version: int
    event_id: str
    timestamp: datetime
    metadata: EventMetadata = EventMetadata()

    def data(self) -> dict[str, Any]:
        """The payload as stored: JSON-ready, money as a decimal string."""
        raise NotImplementedError

    @classmethod
    def payload(cls, data: Mapping[str, Any]) -> dict[str, Any]:
        """The payload's fields, read and checked from stored data, in a new dict: it
        becomes the event's ``__dict__`` (see ``domain.upcasting.events_from_stored``)."""
        raise NotImplementedError


@dataclass(frozen=True, kw_only=True)
class OrderCreated(Event):
    event_type: ClassVar[str] = "OrderCreated"

    customer_id: str

    def data(self) -> dict[str, Any]:
        return {"customer_id": self.customer_id, "status": "created"}

    @classmethod
    def payload(cls, data: Mapping[str, Any]) -> dict[str, Any]:
        return {"customer_id": str(data["customer_id"])}


@dataclass(frozen=True, kw_only=True)
class ItemAdded(Event):
    event_type: ClassVar[str] = "ItemAdded"
    # Version 1 (the walkthrough) stored the price as a float; version 2 as a decimal string.
    schema_version: ClassVar[int] = 2

    item_id: str
    quantity: int
    price: Decimal

    def data(self) -> dict[str, Any]:
        return {"item_id": self.item_id, "quantity": self.quantity, "price": str(self.price)}

    @classmethod
    def payload(cls, data: Mapping[str, Any]) -> dict[str, Any]:
        quantity, price = data["quantity"], Decimal(data["price"])
        # Stored data is trusted no more than a message: a bad row must not fold silently.
        if isinstance(quantity, bool) or not isinstance(quantity, int):
            raise TypeError(f"quantity must be an integer, got {quantity!r}")
        if not price.is_finite():
            raise ValueError(f"price must be finite, got {price}")
        return {"item_id": str(data["item_id"]), "quantity": quantity, "price": price}


@dataclass(frozen=True, kw_only=True)
class ItemRemoved(Event):
    event_type: ClassVar[str] = "ItemRemoved"

    item_id: str

    def data(self) -> dict[str, Any]:
        return {"item_id": self.item_id}

    @classmethod
    def payload(cls, data: Mapping[str, Any]) -> dict[str, Any]:
        return {"item_id": str(data["item_id"])}


@dataclass(frozen=True, kw_only=True)
class OrderPaid(Event):
    event_type: ClassVar[str] = "OrderPaid"

    payment_method: str

    def data(self) -> dict[str, Any]:
        return {"payment_method": self.payment_method, "status": "paid"}

    @classmethod
    def payload(cls, data: Mapping[str, Any]) -> dict[str, Any]:
        return {"payment_method": str(data["payment_method"])}


@dataclass(frozen=True, kw_only=True)
class OrderCancelled(Event):
    event_type: ClassVar[str] = "OrderCancelled"

    reason: str

    def data(self) -> dict[str, Any]:
        return {"reason": self.reason, "status": "cancelled"}

    @classmethod
    def payload(cls, data: Mapping[str, Any]) -> dict[str, Any]:
        return {"reason": str(data["reason"])}


EVENT_TYPES: dict[str, type[Event]] = {
    cls.event_type: cls for cls in (OrderCreated, ItemAdded, ItemRemoved, OrderPaid, OrderCancelled)
}
