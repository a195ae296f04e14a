"""The global log, read in commit order without gaps, for subscribers such as projections.

Positions are drawn when a row is inserted but become visible when its transaction
commits, so "everything after position N" skips rows of transactions still open when
the reader passed them. On PostgreSQL the reader instead orders by ``(transaction_id,
position)`` and returns only rows of transactions older than every transaction still
in progress (``pg_snapshot_xmin``): those can no longer be joined by anything earlier.
A long-open transaction holds readers back, which shows as lag, never as a skipped event.
Transaction ids are cluster-wide, so a transaction open in any database of the server
holds readers back too.

SQLite has one writer at a time, so position order is commit order there.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any

from sqlalchemy import Connection, Engine, func, select, text

from domain.events import Event, EventMetadata
from store.codec import EVENT_COLUMNS, as_utc, event_from_row
from store.driver import driver_cursor
from store.schema import events


@dataclass(frozen=True, order=True)
class Checkpoint:
    transaction_id: int = 0
    position: int = 0


@dataclass(frozen=True)
class RecordedEvent:
    """One row of the log. ``event`` is decoded on first use, so a row that cannot be
    decoded raises there, for its subscriber to park, not in the middle of a batch."""

    checkpoint: Checkpoint
    event_id: str
    event_type: str
    row: dict[str, Any] = field(repr=False, compare=False)

    @cached_property
    def event(self) -> Event:
        return event_from_row(self.row)


@dataclass(frozen=True)
class Backlog:
    """What a subscriber at some checkpoint has not read yet, held-back rows included."""

    events: int
    oldest: datetime | None


# Read on the driver's cursor (see store/driver.py), with ids as text (psycopg2 has no
# xid8 type) and the metadata as three columns rather than a JSON object to parse.
# ORDER BY names the table's columns: the text aliases would sort "10" before "9".
_GAP_FREE_AFTER = """
    SELECT transaction_id::text, position, event_id::text, event_type, schema_version,
           aggregate_id, version, data, metadata->>'command_id',
           metadata->>'correlation_id', metadata->>'causation_id', recorded_at
    FROM events
    WHERE (transaction_id, position) > (%(transaction_id)s::xid8, %(position)s)
      AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())
    ORDER BY events.transaction_id, events.position
"""

_BACKLOG = text(
    """
    SELECT count(*) AS events, min(recorded_at) AS oldest
    FROM events
    WHERE (transaction_id, position) > (CAST(:transaction_id AS xid8), :position)
    """
)

# Not ``EXISTS (...)``: for that the planner expects matches spread through the table
# and scans it from the start, while the rows after a checkpoint are all at its end
# (12 ms at 120,000 events, on every caught-up run). In index order the first one ends it.
_ANY_AFTER = text(
    """
    SELECT 1 FROM events
    WHERE (transaction_id, position) > (CAST(:transaction_id AS xid8), :position)
    ORDER BY events.transaction_id, events.position
    LIMIT 1
    """
)

_HEAD = text(
    """
    SELECT transaction_id::text AS txid, position FROM events
    ORDER BY events.transaction_id DESC, events.position DESC LIMIT 1
    """
)


class GlobalLogReader:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def read(self, after: Checkpoint, limit: int = 500) -> list[RecordedEvent]:
        """Up to ``limit`` events committed after ``after``, in commit order."""
        with self._engine.connect() as conn:
            return self.read_in(conn, after, limit)

    def read_in(self, conn: Connection, after: Checkpoint, limit: int) -> list[RecordedEvent]:
        """The same, inside the caller's transaction (a projection's, say)."""
        if conn.dialect.name == "postgresql":
            with driver_cursor(conn) as cursor:
                cursor.execute(_GAP_FREE_AFTER + " LIMIT %(limit)s", _params(after, limit=limit))
                return [_recorded(*row) for row in cursor.fetchall()]
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
                Checkpoint(int(row.get("txid") or 0), row["position"]),
                str(row["event_id"]),
                row["event_type"],
                dict(row),
            )
            for row in rows
        ]

    def batches_in(
        self, conn: Connection, after: Checkpoint, size: int
    ) -> Generator[list[RecordedEvent], None, None]:
        """Everything ``read_in`` returns after ``after``, ``size`` events at a time, for a
        pass over the whole log (rebuild, verify). ``conn`` must be in a transaction, and
        the caller must close the iterator before leaving it (``contextlib.closing``).

        On PostgreSQL it is one query on a server-side cursor, which walks the index
        once. A LIMIT query per batch finds its place again each time, and with the
        statistics stale after a bulk load the planner did so by sorting every row
        left, per batch: a pass over 100,000 events spent 12 us an event there.
        """
        if conn.dialect.name != "postgresql":
            while batch := self.read_in(conn, after, size):
                yield batch
                after = batch[-1].checkpoint
            return
        with driver_cursor(conn, name="orders_log_pass") as cursor:
            cursor.execute(_GAP_FREE_AFTER, _params(after))
            while rows := cursor.fetchmany(size):
                yield [_recorded(*row) for row in rows]

    def holds_back(self, conn: Connection, after: Checkpoint) -> bool:
        """Whether rows after ``after`` exist that ``read`` does not return yet (their
        transactions, or older ones, are still open). Never on SQLite."""
        if conn.dialect.name != "postgresql":
            return False
        return conn.execute(_ANY_AFTER, _params(after)).first() is not None

    def backlog(self, conn: Connection, after: Checkpoint) -> Backlog:
        if conn.dialect.name == "postgresql":
            row = conn.execute(_BACKLOG, _params(after)).one()
        else:
            query = select(
                func.count().label("events"), func.min(events.c.recorded_at).label("oldest")
            ).where(events.c.position > after.position)
            row = conn.execute(query).one()
        return Backlog(int(row.events), as_utc(row.oldest) if row.oldest else None)

    def head(self, conn: Connection) -> Checkpoint:
        """The newest row's checkpoint, committed or held back alike."""
        if conn.dialect.name == "postgresql":
            row = conn.execute(_HEAD).first()
            return Checkpoint(int(row.txid), row.position) if row else Checkpoint()
        position = conn.execute(select(func.max(events.c.position))).scalar_one()
        return Checkpoint(0, position or 0)


def _recorded(
    txid: str,
    position: int,
    event_id: str,
    event_type: str,
    schema_version: int,
    aggregate_id: str,
    version: int,
    data: Any,
    *causes_and_time: Any,
) -> RecordedEvent:
    *causes, recorded_at = causes_and_time
    row = {
        "event_id": event_id,
        "event_type": event_type,
        "schema_version": schema_version,
        "aggregate_id": aggregate_id,
        "version": version,
        "data": data,
        "metadata": EventMetadata(*causes),
        "recorded_at": recorded_at,
    }
    return RecordedEvent(Checkpoint(int(txid), position), event_id, event_type, row)


def _params(after: Checkpoint, **extra: Any) -> dict[str, Any]:
    return {"transaction_id": str(after.transaction_id), "position": after.position, **extra}
