"""The global log, read in commit order without gaps, for subscribers such as projections.

Positions are drawn when a row is inserted but become visible when its transaction
commits, so "everything after position N" skips rows of transactions still open when
the reader passed them. On PostgreSQL the reader instead orders by ``(transaction_id,
position)`` and returns only rows of transactions older than every transaction still
in progress (``pg_snapshot_xmin``): those can no longer be joined by anything earlier.
A long-open transaction holds readers back, which shows as lag, never as a skipped event.

SQLite has one writer at a time, so position order is commit order there.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine, select, text

from domain.events import Event
from store.codec import EVENT_COLUMNS, event_from_row
from store.schema import events


@dataclass(frozen=True, order=True)
class Checkpoint:
    transaction_id: int = 0
    position: int = 0


@dataclass(frozen=True)
class RecordedEvent:
    checkpoint: Checkpoint
    event: Event


_POSTGRES_AFTER = text(
    f"""
    SELECT transaction_id::text AS transaction_id, position, {", ".join(EVENT_COLUMNS)}
    FROM events
    WHERE (transaction_id, position) > (CAST(:transaction_id AS xid8), :position)
      AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())
    ORDER BY transaction_id, position
    LIMIT :limit
    """  # noqa: S608 - the interpolated names are this module's constant column list
)


class GlobalLogReader:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def read(self, after: Checkpoint, limit: int = 500) -> list[RecordedEvent]:
        """Up to ``limit`` events committed after ``after``, in commit order."""
        with self._engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                params = {
                    "transaction_id": str(after.transaction_id),
                    "position": after.position,
                    "limit": limit,
                }
                rows = conn.execute(_POSTGRES_AFTER, params).mappings().all()
            else:
                query = (
                    select(events.c.position, *(events.c[name] for name in EVENT_COLUMNS))
                    .where(events.c.position > after.position)
                    .order_by(events.c.position)
                    .limit(limit)
                )
                rows = conn.execute(query).mappings().all()
        return [
            RecordedEvent(
                Checkpoint(int(row.get("transaction_id") or 0), row["position"]),
                event_from_row(row),
            )
            for row in rows
        ]
