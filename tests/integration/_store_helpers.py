"""Small builders and probes shared by the store's integration tests."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar

from sqlalchemy import Engine, func, select

from domain.events import EventMetadata, ItemAdded, OrderCreated
from store.schema import command_log, events, snapshots

T = TypeVar("T")

FIXED_TIME = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


def new_id() -> str:
    return str(uuid.uuid4())


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


def row_counts(engine: Engine) -> dict[str, int]:
    """How many rows each store table holds: compared before and after a failure."""
    with engine.connect() as conn:
        return {
            table.name: int(conn.execute(select(func.count()).select_from(table)).scalar_one())
            for table in (events, command_log, snapshots)
        }


def eventually(probe: Callable[[], T], done: Callable[[T], bool], timeout: float = 30.0) -> T:
    """Call ``probe`` until ``done`` accepts its result or ``timeout`` seconds pass.

    The PostgreSQL global reader holds back while ANY older transaction in the cluster is
    open (other test sessions share the server), so a positive expectation may need to
    wait a moment; it returns the last result either way and the caller asserts on it.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if done(result) or time.monotonic() >= deadline:
            return result
        time.sleep(0.05)


def raw_event_row(
    order_id: str,
    version: int,
    event_type: str,
    data: Any,
    *,
    schema_version: int = 1,
    event_id: str | None = None,
) -> dict[str, Any]:
    """A row for ``store.schema.events`` written around the codec, as an old writer did."""
    return {
        "event_id": event_id or new_id(),
        "aggregate_type": "Order",
        "aggregate_id": order_id,
        "version": version,
        "event_type": event_type,
        "schema_version": schema_version,
        "data": data,
        "metadata": {},
        "recorded_at": FIXED_TIME,
    }
