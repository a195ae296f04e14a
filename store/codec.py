"""Between domain events and rows of the ``events`` table."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import RowMapping

from domain.events import Event
from domain.upcasting import event_from_stored

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


def event_from_row(row: Mapping[str, Any] | RowMapping) -> Event:
    return event_from_stored(
        event_type=row["event_type"],
        schema_version=row["schema_version"],
        data=row["data"],
        aggregate_id=row["aggregate_id"],
        version=row["version"],
        event_id=str(row["event_id"]),
        timestamp=as_utc(row["recorded_at"]),
        metadata=row["metadata"],  # a mapping, or already an EventMetadata
    )


def as_utc(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes; everything this store writes is UTC.
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment if moment.tzinfo is UTC else moment.astimezone(UTC)
