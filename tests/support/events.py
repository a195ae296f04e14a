"""Domain events built by hand, for the tests that append to a store directly."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from domain.events import EventMetadata, ItemAdded, OrderCreated
from tests.support.ids import new_id

FIXED_TIME = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


def created(
    order_id: str,
    version: int = 1,
    *,
    customer_id: str = "customer-123",
    event_id: str | None = None,
    at: datetime = FIXED_TIME,
    metadata: EventMetadata | None = None,
) -> OrderCreated:
    return OrderCreated(
        aggregate_id=order_id,
        version=version,
        event_id=event_id or new_id(),
        timestamp=at,
        metadata=metadata or EventMetadata(),
        customer_id=customer_id,
    )


def item_added(
    order_id: str,
    version: int,
    *,
    item_id: str = "apple",
    quantity: int = 1,
    price: str = "1.50",
    event_id: str | None = None,
    at: datetime = FIXED_TIME,
    metadata: EventMetadata | None = None,
) -> ItemAdded:
    return ItemAdded(
        aggregate_id=order_id,
        version=version,
        event_id=event_id or new_id(),
        timestamp=at,
        metadata=metadata or EventMetadata(),
        item_id=item_id,
        quantity=quantity,
        price=Decimal(price),
    )
