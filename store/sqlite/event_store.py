"""The event store on SQLite (the embedded mode): plain Core statements in one write
transaction, which SQLite runs one at a time (``BEGIN IMMEDIATE``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TypeVar

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from commands import Outcome
from domain.errors import DuplicateCommand
from domain.events import Event
from domain.ports import StreamState
from domain.snapshots import Snapshot
from store.event_store import SqlEventStore, check_stream

T = TypeVar("T")


class SqliteEventStore(SqlEventStore):
    def load_stream(
        self, aggregate_id: str, *, snapshot_schema: int, command_id: str | None = None
    ) -> StreamState:
        with self._engine.connect() as conn:
            return self._stream_state(conn, aggregate_id, snapshot_schema, command_id)

    def load_streams(
        self, wanted: Sequence[tuple[str, str | None]], *, snapshot_schema: int
    ) -> list[StreamState]:
        # One read transaction: one snapshot of the file, as PostgreSQL's one statement.
        with self._engine.connect() as conn, conn.begin():
            return [
                self._stream_state(conn, aggregate_id, snapshot_schema, command_id)
                for aggregate_id, command_id in wanted
            ]

    def _stream_state(
        self, conn: Connection, aggregate_id: str, snapshot_schema: int, command_id: str | None
    ) -> StreamState:
        recorded, asked = self._logged(conn, command_id) if command_id else (None, None)
        snapshot = self._snapshot(conn, aggregate_id)
        if snapshot is not None and snapshot.schema_version != snapshot_schema:
            snapshot = None
        after = snapshot.version if snapshot else 0
        loaded = self._load(conn, aggregate_id, after, None)
        return StreamState(recorded, snapshot, loaded, asked)

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
        return self._append_in_transaction(
            aggregate_id, expected_version, events, command_type, outcome, fingerprint
        )

    @contextmanager
    def write_batch(self) -> Iterator[SqliteBatch]:
        with self._writer.begin() as conn:
            yield SqliteBatch(self, conn)

    def _is_version_clash(self, violation: IntegrityError) -> bool:
        # SQLite names the constraint's columns, not the constraint.
        return "events.aggregate_id, events.version" in str(violation.orig)


class SqliteBatch:
    """``SqliteEventStore.write_batch``: the store's own statements in one transaction,
    each write under a savepoint (SQLite holds the write lock throughout, so no other
    writer gets in between: a conflict here is with this batch's own writes)."""

    def __init__(self, store: SqliteEventStore, conn: Connection) -> None:
        self._store = store
        self._conn = conn

    def load_stream(
        self, aggregate_id: str, *, snapshot_schema: int, command_id: str | None = None
    ) -> StreamState:
        return self._store._stream_state(self._conn, aggregate_id, snapshot_schema, command_id)

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
        try:
            return self._savepoint(
                lambda: store._append_on(
                    self._conn,
                    aggregate_id,
                    expected_version,
                    events,
                    command_type,
                    outcome,
                    fingerprint,
                )
            )
        except IntegrityError as violation:
            conflict = store._conflict_or(violation, aggregate_id, expected_version, self._conn)
            raise conflict from violation

    def record_outcome(
        self, command_type: str, outcome: Outcome, fingerprint: str | None = None
    ) -> Outcome:
        try:
            self._savepoint(
                lambda: self._store._record(self._conn, command_type, outcome, fingerprint)
            )
        except DuplicateCommand:
            recorded = self._store._logged(self._conn, outcome.command_id)[0]
            if recorded is not None:
                return recorded
        return outcome

    def save_snapshot(self, snapshot: Snapshot) -> None:
        self._savepoint(lambda: self._store._save_snapshot(self._conn, snapshot))

    def _savepoint(self, write: Callable[[], T]) -> T:
        with self._conn.begin_nested():
            return write()
