"""Batches on PostgreSQL: many streams read in one statement, many commands written in
one transaction with one commit (``PostgresEventStore.load_streams`` and ``write_batch``).

A batch first writes all it decided in one statement (``grouped``: ``GROUP_APPEND`` in
``store/postgres/statements.py``, the events and command-log rows as ``unnest`` arrays)
under one savepoint: the appends are buffered as they are decided, each answered at
once with its new version, since the decisions after it use the batch's own Orders.
The statement writes only if every stream is still at the version the batch read, and
a racing writer or a redelivered command trips a unique constraint; then, or when the
batch holds what a buffer cannot answer (a command id twice, a read after a write), the
group is rolled back to its savepoint and forgotten, and the handler decides the batch
again, from streams read again in this transaction, one write at a time as follows.

Each such write runs under a savepoint of its own, sent in the same round trip as the
write itself (``RELEASE`` of the previous one, ``SAVEPOINT``, the prepared append): a
command costs one round trip, and the commit is shared. A write that fails (a unique
violation from a racing writer, a deadlock between two batches) is rolled back to its
savepoint and reported as the lost race it is; the batch's other writes stay.

Savepoints that wrote are subtransactions until the commit; past 64 in one transaction
PostgreSQL's snapshots get slower for everyone (the subxid cache overflows), so batches
are kept well below that (``workers/batch/``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError, IntegrityError

from commands import Outcome
from domain.errors import DuplicateCommand, VersionConflict
from domain.events import Event, EventMetadata
from domain.ports import Regroup, StreamState
from domain.snapshots import Snapshot
from domain.upcasting import StoredEvent
from store.codec import as_utc, decode, event_to_row
from store.event_store import check_stream
from store.postgres.driver import driver_cursor, prepares
from store.postgres.statements import (
    EVENT,
    GROUP_APPEND,
    OUTCOME,
    SNAPSHOT,
    append_statement,
)

if TYPE_CHECKING:
    from store.postgres.event_store import PostgresEventStore

T = TypeVar("T")

# LOAD_STREAM (store/postgres/statements.py) for many streams and command ids at once,
# each row keyed by its stream (or, for an outcome, its command id).
LOAD_STREAMS = """
    SELECT 0 AS part, command_id AS key, 0 AS version, 0 AS schema_version, '' AS event_type,
           COALESCE(fingerprint, '') AS event_id, outcome AS data, NULL AS command_id,
           NULL AS correlation_id, NULL AS causation_id, recorded_at
      FROM command_log WHERE command_id = ANY(%(command_ids)s::varchar[])
    UNION ALL
    SELECT 1, aggregate_id, version, schema_version, '', '', state, NULL, NULL, NULL, taken_at
      FROM snapshots
     WHERE aggregate_type = %(aggregate_type)s AND aggregate_id = ANY(%(aggregate_ids)s::varchar[])
       AND schema_version = %(snapshot_schema)s
    UNION ALL
    SELECT 2, e.aggregate_id, e.version, e.schema_version, e.event_type, e.event_id::text,
           e.data, e.metadata->>'command_id', e.metadata->>'correlation_id',
           e.metadata->>'causation_id', e.recorded_at
      FROM events e
      LEFT JOIN snapshots s
        ON s.aggregate_type = e.aggregate_type AND s.aggregate_id = e.aggregate_id
       AND s.schema_version = %(snapshot_schema)s
     WHERE e.aggregate_type = %(aggregate_type)s
       AND e.aggregate_id = ANY(%(aggregate_ids)s::varchar[])
       AND e.version > COALESCE(s.version, 0)
    ORDER BY part, key, version
"""

SAVEPOINT = "orders_batch_write"
RACES = {"40P01", "40001"}  # deadlock_detected, serialization_failure: lost races too


def read_streams(
    conn: Connection,
    wanted: Sequence[tuple[str, str | None]],
    aggregate_type: str,
    snapshot_schema: int,
) -> list[StreamState]:
    """``LOAD_STREAMS`` on ``conn``: a ``StreamState`` per (aggregate id, command id)."""
    aggregate_ids = sorted({aggregate_id for aggregate_id, _ in wanted})
    command_ids = sorted({command_id for _, command_id in wanted if command_id})
    params = {
        "command_ids": command_ids,
        "aggregate_ids": aggregate_ids,
        "aggregate_type": aggregate_type,
        "snapshot_schema": snapshot_schema,
    }
    with driver_cursor(conn) as cursor:
        cursor.execute(LOAD_STREAMS, params)
        rows = cursor.fetchall()
    recorded: dict[str, tuple[Outcome, str | None]] = {}
    snapshots: dict[str, Snapshot] = {}
    stored: dict[str, list[StoredEvent]] = {aggregate_id: [] for aggregate_id in aggregate_ids}
    for part, key, version, schema, event_type, event_id, data, command, cause, causer, at in rows:
        if part == EVENT:
            metadata = EventMetadata(command, cause, causer)
            stored[key].append(
                StoredEvent(event_type, schema, data, version, event_id, as_utc(at), metadata)
            )
        elif part == SNAPSHOT:
            snapshots[key] = Snapshot(key, version, schema, data)
        elif part == OUTCOME:
            recorded[key] = (Outcome.from_dict(data), event_id or None)
    streams = {key: decode(key, events) for key, events in stored.items()}
    states = []
    for aggregate_id, command_id in wanted:
        outcome, asked = recorded.get(command_id or "", (None, None))
        states.append(
            StreamState(outcome, snapshots.get(aggregate_id), streams[aggregate_id], asked)
        )
    return states


class PostgresBatch:
    """The writes of one ``write_batch`` transaction on ``conn`` (see the module)."""

    def __init__(self, store: PostgresEventStore, conn: Connection) -> None:
        self._store = store
        self._conn = conn
        self._held = False  # a savepoint of the previous write is still open

    def load_streams(
        self, wanted: Sequence[tuple[str, str | None]], *, snapshot_schema: int
    ) -> list[StreamState]:
        store = self._store
        return read_streams(self._conn, wanted, store._aggregate_type, snapshot_schema)

    @contextmanager
    def grouped(self) -> Iterator[Group]:
        """The block's writes buffered, then sent as ``GROUP_APPEND`` under a savepoint
        of its own: all of them, or none and ``Regroup``."""
        group = Group()
        yield group
        if not group.command_ids:
            return
        params = group.params(self._store._aggregate_type)
        sql, values = GROUP_APPEND.sql_for(
            self._conn.connection.info, params, prepare=prepares(self._conn)
        )
        try:
            [(stale, recorded, appended)] = self._raw(sql, values)
        except DBAPIError as error:
            # A unique violation is a racing writer (or a redelivery) on one of the
            # commands; the command-by-command writes find which, as they always have.
            if error.connection_invalidated or not (
                isinstance(error, IntegrityError) or self._is_race(error)
            ):
                raise
            self._roll_back()
            raise Regroup("the group write lost a race") from error
        if stale or recorded != len(group.command_ids) or appended != group.event_count:
            self._roll_back()
            raise Regroup(f"{stale} of the batch's streams moved since it read them")

    def load_stream(
        self, aggregate_id: str, *, snapshot_schema: int, command_id: str | None = None
    ) -> StreamState:
        store = self._store
        [state] = read_streams(
            self._conn, [(aggregate_id, command_id)], store._aggregate_type, snapshot_schema
        )
        return state

    def append(
        self,
        aggregate_id: str,
        expected_version: int,
        events: Sequence[Event],
        *,
        command_type: str | None = None,
        outcome: Outcome | None = None,
        fingerprint: str | None = None,
    ) -> int:
        check_stream(aggregate_id, expected_version, events)
        store = self._store
        if not events:  # only an outcome to record: the Core statements will do
            return self._in_savepoint(
                lambda: store._append_on(
                    self._conn,
                    aggregate_id,
                    expected_version,
                    events,
                    command_type,
                    outcome,
                    fingerprint,
                ),
                aggregate_id,
                expected_version,
            )
        params = store._append_params(aggregate_id, expected_version, events)
        if outcome is not None:
            params.update(store._command_params(command_type, outcome, fingerprint))
        statement = append_statement(len(events), outcome is not None)
        sql, values = statement.sql_for(
            self._conn.connection.info, params, prepare=prepares(self._conn)
        )
        rows = self._in_savepoint(
            lambda: self._raw(sql, values), aggregate_id, expected_version, held=True
        )
        [(recorded, known, actual, _)] = rows
        if outcome is not None and known:
            raise DuplicateCommand(outcome.command_id)
        if actual != expected_version:
            raise VersionConflict(store._stream(aggregate_id), expected_version, actual)
        if outcome is not None and not recorded:
            raise DuplicateCommand(outcome.command_id)
        return expected_version + len(events)

    def record_outcome(
        self, command_type: str, outcome: Outcome, fingerprint: str | None = None
    ) -> Outcome:
        store = self._store
        try:
            self._in_savepoint(
                lambda: store._record(self._conn, command_type, outcome, fingerprint),
                outcome.order_id or "",
                0,
            )
        except DuplicateCommand:
            recorded = store._logged(self._conn, outcome.command_id)[0]
            if recorded is not None:
                return recorded
        return outcome

    def save_snapshot(self, snapshot: Snapshot) -> None:
        self._in_savepoint(
            lambda: self._store._save_snapshot(self._conn, snapshot), snapshot.aggregate_id, 0
        )

    def _raw(self, sql: str, values: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        """``sql`` in a new savepoint, in one round trip with the savepoint statements."""
        release = f"RELEASE SAVEPOINT {SAVEPOINT}; " if self._held else ""
        with driver_cursor(self._conn) as cursor:
            cursor.execute(f"{release}SAVEPOINT {SAVEPOINT}; {sql}", values)
            self._held = True
            rows: list[tuple[Any, ...]] = cursor.fetchall()
        return rows

    def _in_savepoint(
        self, write: Callable[[], T], aggregate_id: str, expected_version: int, held: bool = False
    ) -> T:
        """``write`` under a savepoint (``held``: ``write`` opens it itself), rolled back
        to it when ``write`` fails; a lost race comes out as ``VersionConflict``."""
        if not held:
            release = f"RELEASE SAVEPOINT {SAVEPOINT}; " if self._held else ""
            with driver_cursor(self._conn) as cursor:
                cursor.execute(f"{release}SAVEPOINT {SAVEPOINT}")
            self._held = True
        try:
            return write()
        except DBAPIError as error:
            if error.connection_invalidated:
                raise
            self._roll_back()
            if self._is_race(error):
                conflict = self._store._conflict(aggregate_id, expected_version, self._conn)
                raise conflict from error
            raise
        except (DuplicateCommand, VersionConflict):
            self._roll_back()
            raise

    def _roll_back(self) -> None:
        with driver_cursor(self._conn) as cursor:
            cursor.execute(f"ROLLBACK TO SAVEPOINT {SAVEPOINT}")
        self._held = True  # rolled back to, it is still there

    def _is_race(self, error: DBAPIError) -> bool:
        if isinstance(error, IntegrityError):
            return self._store._is_version_clash(error)
        return getattr(error.orig, "pgcode", None) in RACES


class Group:
    """The writes of ``PostgresBatch.grouped``, kept as ``GROUP_APPEND``'s columns. It
    takes what deciding a batch writes in the common case (an append with its outcome,
    an outcome alone), and raises ``Regroup`` for the rest, before anything is sent."""

    def __init__(self) -> None:
        self.command_ids: list[str] = []
        self._seen: set[str] = set()
        self._commands: list[tuple[str, str, str, str, datetime, str | None]] = []
        self._streams: dict[str, int] = {}  # the version each stream must be at
        self._next: dict[str, int] = {}  # the version after the events buffered on it
        self._events: list[dict[str, Any]] = []

    @property
    def event_count(self) -> int:
        return len(self._events)

    def load_stream(
        self, aggregate_id: str, *, snapshot_schema: int, command_id: str | None = None
    ) -> StreamState:
        # Only a lost race or a duplicate reads again; neither happens before the end.
        raise Regroup(f"a command on {aggregate_id} reads its stream again")

    def append(
        self,
        aggregate_id: str,
        expected_version: int,
        events: Sequence[Event],
        *,
        command_type: str | None = None,
        outcome: Outcome | None = None,
        fingerprint: str | None = None,
    ) -> int:
        check_stream(aggregate_id, expected_version, events)
        if not events or outcome is None:
            raise Regroup("only an append that records its command is grouped")
        # The batch decides each order on its own writes: anything else is not its shape.
        if self._next.get(aggregate_id, expected_version) != expected_version:
            raise Regroup(f"{aggregate_id} appended at v{expected_version} out of turn")
        self._command(aggregate_id, command_type, outcome, fingerprint)
        self._streams.setdefault(aggregate_id, expected_version)
        self._events.extend(event_to_row(event) for event in events)
        self._next[aggregate_id] = expected_version + len(events)
        return expected_version + len(events)

    def record_outcome(
        self, command_type: str, outcome: Outcome, fingerprint: str | None = None
    ) -> Outcome:
        self._command(outcome.order_id or "", command_type, outcome, fingerprint)
        return outcome

    def save_snapshot(self, snapshot: Snapshot) -> None:
        raise Regroup("snapshots are saved after the group")

    def _command(
        self, aggregate_id: str, command_type: str | None, outcome: Outcome, fingerprint: str | None
    ) -> None:
        # A command id twice in one batch: the second must find the first's outcome,
        # which the command-by-command writes do.
        if outcome.command_id in self._seen:
            raise Regroup(f"command {outcome.command_id} twice in the batch")
        self._seen.add(outcome.command_id)
        self.command_ids.append(outcome.command_id)
        status = outcome.status
        at = datetime.now(UTC)
        self._commands.append(
            (
                command_type or "",
                aggregate_id,
                status,
                json.dumps(outcome.to_dict()),
                at,
                fingerprint,
            )
        )

    def params(self, aggregate_type: str) -> dict[str, Any]:
        commands = self._commands
        events = self._events
        return {
            "aggregate_type": aggregate_type,
            "stream_ids": list(self._streams),
            "stream_versions": list(self._streams.values()),
            "command_ids": self.command_ids,
            "command_types": [row[0] for row in commands],
            "command_aggregates": [row[1] for row in commands],
            "statuses": [row[2] for row in commands],
            "outcomes": [row[3] for row in commands],
            "command_recorded_at": [row[4] for row in commands],
            "fingerprints": [row[5] for row in commands],
            "event_ids": [row["event_id"] for row in events],
            "event_aggregates": [row["aggregate_id"] for row in events],
            "versions": [row["version"] for row in events],
            "event_types": [row["event_type"] for row in events],
            "schema_versions": [row["schema_version"] for row in events],
            "data": [json.dumps(row["data"]) for row in events],
            "metadata": [json.dumps(row["metadata"]) for row in events],
            "recorded_at": [row["recorded_at"] for row in events],
        }
