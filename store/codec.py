"""Between domain events and what the store keeps of them, for every backend.

Writing: ``event_to_row``. Reading: each backend brings a row into the one stored shape,
``StoredEvent`` (``stored_from_row`` for rows read through SQLAlchemy Core), and
``decode`` turns stored events back into domain events, upcasting old shapes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import RowMapping

from domain.events import Event, EventMetadata
from domain.upcasting import StoredEvent, events_from_stored

EVENT_COLUMNS = (
    "event_id",
    "aggregate_id",
    "version",
    "event_type",
    "schema_version",
    "data",
    "metadata",
    "recorded_at",
)
"""The ``events`` columns ``stored_from_row`` reads."""


def event_to_row(event: Event) -> dict[str, Any]:
    return {
        "event_id": event.event_id,
        "aggregate_type": event.aggregate_type,
        "aggregate_id": event.aggregate_id,
        "version": event.version,
        "event_type": event.event_type,
        "schema_version": event.schema_version,
        "data": event.data(),
        "metadata": event.metadata.to_dict(),
        "recorded_at": event.timestamp.astimezone(UTC),
    }


def stored_from_row(row: Mapping[str, Any] | RowMapping) -> StoredEvent:
    """A row of ``EVENT_COLUMNS`` in the stored shape."""
    metadata = row["metadata"]
    return StoredEvent(
        row["event_type"],
        row["schema_version"],
        row["data"],
        row["version"],
        str(row["event_id"]),
        as_utc(row["recorded_at"]),
        metadata if isinstance(metadata, EventMetadata) else EventMetadata.from_dict(metadata),
    )


def decode(aggregate_id: str, stored: Iterable[StoredEvent]) -> list[Event]:
    """One stream's events from their stored form."""
    return events_from_stored(aggregate_id, stored)


def as_utc(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes; everything this store writes is UTC.
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment if moment.tzinfo is UTC else moment.astimezone(UTC)
