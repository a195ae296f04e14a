"""The event store on PostgreSQL: a decision's read and its write are one statement each.

The statements (``store/postgres/statements.py``) are prepared once per connection and
run on the driver's own connections, kept out of SQLAlchemy's pool
(``store/postgres/driver.py``): on the path every command takes, SQLAlchemy's per-call
bookkeeping cost as much as the database did.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError

from commands import Outcome
from domain.errors import DuplicateCommand, VersionConflict
from domain.events import Event, EventMetadata
from domain.ports import StreamState
from domain.snapshots import Snapshot
from domain.upcasting import StoredEvent
from store.backend import Backend
from store.codec import as_utc, decode, event_to_row
from store.event_store import VERSION_CONSTRAINT, SqlEventStore, check_stream
from store.postgres.batch import PostgresBatch, read_streams
from store.postgres.driver import driver_connections
from store.postgres.statements import (
    EVENT,
    LOAD_STREAM,
    OUTCOME,
    SNAPSHOT,
    append_statement,
)


class PostgresEventStore(SqlEventStore):
    def __init__(self, engine: Engine, backend: Backend) -> None:
        super().__init__(engine, backend)
        # A read needs no transaction: that saves the BEGIN and the ROLLBACK the
        # connection pool would otherwise send around every read.
        self._reader = engine.execution_options(isolation_level="AUTOCOMMIT")
        self._connections = driver_connections(engine)

    def load_stream(
        self, aggregate_id: str, *, snapshot_schema: int, command_id: str | None = None
    ) -> StreamState:
        params = {
            "command_id": command_id,
            "aggregate_type": self._aggregate_type,
            "aggregate_id": aggregate_id,
            "snapshot_schema": snapshot_schema,
        }
        recorded, asked, snapshot = None, None, None
        stored: list[StoredEvent] = []
        # Plain tuples, fetched at once and unpacked in ``StreamRow``'s order: this is
        # the hot path of every command, and a replay reads thousands of rows.
        rows = LOAD_STREAM.run(self._connections, params)
        for part, version, schema, event_type, event_id, data, command, cause, causer, at in rows:
            if part == EVENT:
                metadata = EventMetadata(command, cause, causer)
                stored.append(
                    StoredEvent(event_type, schema, data, version, event_id, as_utc(at), metadata)
                )
            elif part == SNAPSHOT:
                snapshot = Snapshot(aggregate_id, version, schema, data)
            elif part == OUTCOME:
                recorded, asked = Outcome.from_dict(data), event_id or None
        return StreamState(recorded, snapshot, decode(aggregate_id, stored), asked)

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
        if not events:  # only an outcome to record: the plain way will do
            return self._append_in_transaction(
                aggregate_id, expected_version, events, command_type, outcome, fingerprint
            )
        params = self._append_params(aggregate_id, expected_version, events)
        if outcome is not None:
            params.update(self._command_params(command_type, outcome, fingerprint))
        statement = append_statement(len(events), outcome is not None)
        try:
            [(recorded, known, actual, _)] = statement.run(self._connections, params)
        except IntegrityError as violation:
            raise self._conflict_or(violation, aggregate_id, expected_version) from violation
        if outcome is not None and known:
            raise DuplicateCommand(outcome.command_id)
        if actual != expected_version:
            raise VersionConflict(self._stream(aggregate_id), expected_version, actual)
        if outcome is not None and not recorded:
            # Another delivery recorded it between this statement's snapshot and its insert.
            raise DuplicateCommand(outcome.command_id)
        return expected_version + len(events)

    def load_streams(
        self, wanted: Sequence[tuple[str, str | None]], *, snapshot_schema: int
    ) -> list[StreamState]:
        with self._reader.connect() as conn:
            return read_streams(conn, wanted, self._aggregate_type, snapshot_schema)

    @contextmanager
    def write_batch(self) -> Iterator[PostgresBatch]:
        with self._writer.begin() as conn:
            yield PostgresBatch(self, conn)

    def _command_params(
        self, command_type: str | None, outcome: Outcome, fingerprint: str | None
    ) -> dict[str, Any]:
        return {
            "command_id": outcome.command_id,
            "command_type": command_type or "",
            "status": outcome.status,
            "outcome": json.dumps(outcome.to_dict()),
            "command_recorded_at": datetime.now(UTC),
            "fingerprint": fingerprint,
        }

    def _append_params(
        self, aggregate_id: str, expected_version: int, events: Sequence[Event]
    ) -> dict[str, Any]:
        params: dict[str, Any] = {
            "aggregate_type": self._aggregate_type,
            "aggregate_id": aggregate_id,
            "expected_version": expected_version,
        }
        for index, event in enumerate(events):
            row = event_to_row(event)
            params[f"event_id_{index}"] = row["event_id"]
            params[f"version_{index}"] = row["version"]
            params[f"event_type_{index}"] = row["event_type"]
            params[f"schema_version_{index}"] = row["schema_version"]
            params[f"data_{index}"] = json.dumps(row["data"])
            params[f"metadata_{index}"] = json.dumps(row["metadata"])
            params[f"recorded_at_{index}"] = row["recorded_at"]
        return params

    def _is_version_clash(self, violation: IntegrityError) -> bool:
        return VERSION_CONSTRAINT in str(violation.orig)
