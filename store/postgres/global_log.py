"""The global log on PostgreSQL, read in commit order without gaps.

Positions are drawn when a row is inserted but become visible when its transaction
commits, so "everything after position N" skips rows of transactions still open when
the reader passed them. This reader instead orders by ``(transaction_id, position)``
and returns only rows of transactions older than every transaction still in progress
(``pg_snapshot_xmin``): those can no longer be joined by anything earlier. A long-open
transaction holds readers back, which shows as lag, never as a skipped event.
Transaction ids are cluster-wide, so a transaction open in any database of the server
holds readers back too.
"""

from __future__ import annotations

from collections.abc import Generator
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, text

from domain.events import AGGREGATE_TYPE, EventMetadata
from domain.upcasting import StoredEvent
from store.codec import as_utc
from store.log import Backlog, Checkpoint, GlobalLog, RecordedEvent
from store.postgres.driver import driver_cursor

# Read on the driver's cursor (see driver.py), with ids as text (psycopg2 has no xid8
# type) and the metadata as three columns rather than a JSON object to parse.
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


class PostgresGlobalLog(GlobalLog):
    def read_in(self, conn: Connection, after: Checkpoint, limit: int) -> list[RecordedEvent]:
        with driver_cursor(conn) as cursor:
            cursor.execute(_GAP_FREE_AFTER + " LIMIT %(limit)s", _params(after, limit=limit))
            return [_recorded(*row) for row in cursor.fetchall()]

    def batches_in(
        self, conn: Connection, after: Checkpoint, size: int
    ) -> Generator[list[RecordedEvent], None, None]:
        """One query on a server-side cursor, which walks the index once. A LIMIT query
        per batch finds its place again each time, and with the statistics stale after a
        bulk load the planner did so by sorting every row left, per batch: a pass over
        100,000 events spent 12 us an event there."""
        with driver_cursor(conn, name="orders_log_pass") as cursor:
            cursor.execute(_GAP_FREE_AFTER, _params(after))
            while rows := cursor.fetchmany(size):
                yield [_recorded(*row) for row in rows]

    def holds_back(self, conn: Connection, after: Checkpoint) -> bool:
        return conn.execute(_ANY_AFTER, _params(after)).first() is not None

    def backlog(self, conn: Connection, after: Checkpoint) -> Backlog:
        row = conn.execute(_BACKLOG, _params(after)).one()
        return Backlog(int(row.events), as_utc(row.oldest) if row.oldest else None)

    def head(self, conn: Connection) -> Checkpoint:
        row = conn.execute(_HEAD).first()
        return Checkpoint(int(row.txid), row.position) if row else Checkpoint()

    def checkpoint_of(self, conn: Connection, aggregate_id: str, version: int) -> Checkpoint | None:
        params = {
            "aggregate_type": AGGREGATE_TYPE,
            "aggregate_id": aggregate_id,
            "version": version,
        }
        row = conn.execute(_AT, params).first()
        return Checkpoint(int(row.txid), row.position) if row else None


_AT = text(
    """
    SELECT transaction_id::text AS txid, position FROM events
    WHERE aggregate_type = :aggregate_type AND aggregate_id = :aggregate_id
      AND version = :version
    """
)


def _recorded(
    txid: str,
    position: int,
    event_id: str,
    event_type: str,
    schema_version: int,
    aggregate_id: str,
    version: int,
    data: Any,
    command_id: str | None,
    correlation_id: str | None,
    causation_id: str | None,
    recorded_at: datetime,
) -> RecordedEvent:
    metadata = EventMetadata(command_id, correlation_id, causation_id)
    stored = StoredEvent(
        event_type, schema_version, data, version, event_id, as_utc(recorded_at), metadata
    )
    return RecordedEvent(Checkpoint(int(txid), position), aggregate_id, stored)


def _params(after: Checkpoint, **extra: Any) -> dict[str, Any]:
    return {"transaction_id": str(after.transaction_id), "position": after.position, **extra}
