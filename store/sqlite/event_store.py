"""The event store on SQLite (the embedded mode): plain Core statements in one write
transaction, which SQLite runs one at a time (``BEGIN IMMEDIATE``)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.exc import IntegrityError

from commands import Outcome
from domain.events import Event
from domain.ports import StreamState
from store.event_store import SqlEventStore, check_stream


class SqliteEventStore(SqlEventStore):
    def load_stream(
        self, aggregate_id: str, *, snapshot_schema: int, command_id: str | None = None
    ) -> StreamState:
        with self._engine.connect() as conn:
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

    def _is_version_clash(self, violation: IntegrityError) -> bool:
        # SQLite names the constraint's columns, not the constraint.
        return "events.aggregate_id, events.version" in str(violation.orig)
