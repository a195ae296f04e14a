"""The event store on SQLAlchemy Core: PostgreSQL in production, SQLite embedded.

Optimistic concurrency comes from ``UNIQUE(aggregate_type, aggregate_id, version)``:
of two writers that decided on the same version, the database lets one commit and the
other gets ``VersionConflict``. Events and the command's outcome commit together.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, func, select
from sqlalchemy.exc import IntegrityError

from commands import Outcome
from domain.errors import DuplicateCommand, VersionConflict
from domain.events import AGGREGATE_TYPE, Event, EventMetadata
from domain.ports import StreamState
from domain.snapshots import Snapshot
from domain.upcasting import events_from_stored
from store.codec import EVENT_COLUMNS, as_utc, event_from_row, event_to_row
from store.driver import driver_connections
from store.engine import WRITE, upsert_insert
from store.postgres_sql import LOAD_STREAM, append_statement
from store.schema import command_log, events, snapshots

VERSION_CONSTRAINT = "events_stream_version_key"


class SqlEventStore:
    def __init__(self, engine: Engine, aggregate_type: str = AGGREGATE_TYPE) -> None:
        self._engine = engine
        self._writer = engine.execution_options(**WRITE)
        self._postgres = engine.dialect.name == "postgresql"
        # A read needs no transaction: on PostgreSQL that saves the BEGIN and the
        # ROLLBACK the connection pool would otherwise send around every read.
        self._reader = (
            engine.execution_options(isolation_level="AUTOCOMMIT") if self._postgres else engine
        )
        self._aggregate_type = aggregate_type
        # The hot path's own connections (PostgreSQL only; see store/driver.py).
        self._connections = driver_connections(engine) if self._postgres else None

    # -- reading -----------------------------------------------------------------------

    def load(
        self, aggregate_id: str, after_version: int = 0, until_version: int | None = None
    ) -> list[Event]:
        """Events with ``after_version < version <= until_version``, oldest first."""
        with self._reader.connect() as conn:
            return self._load(conn, aggregate_id, after_version, until_version)

    def _load(
        self, conn: Connection, aggregate_id: str, after_version: int, until_version: int | None
    ) -> list[Event]:
        query = (
            select(*(events.c[name] for name in EVENT_COLUMNS))
            .where(
                events.c.aggregate_type == self._aggregate_type,
                events.c.aggregate_id == aggregate_id,
                events.c.version > after_version,
            )
            .order_by(events.c.version)
        )
        if until_version is not None:
            query = query.where(events.c.version <= until_version)
        return [event_from_row(row) for row in conn.execute(query).mappings()]

    def load_stream(
        self, aggregate_id: str, *, snapshot_schema: int, command_id: str | None = None
    ) -> StreamState:
        if self._postgres:
            return self._load_stream_at_once(aggregate_id, snapshot_schema, command_id)
        with self._engine.connect() as conn:
            recorded, asked = self._logged(conn, command_id) if command_id else (None, None)
            snapshot = self._snapshot(conn, aggregate_id)
            if snapshot is not None and snapshot.schema_version != snapshot_schema:
                snapshot = None
            after = snapshot.version if snapshot else 0
            loaded = self._load(conn, aggregate_id, after, None)
            return StreamState(recorded, snapshot, loaded, asked)

    def _load_stream_at_once(
        self, aggregate_id: str, snapshot_schema: int, command_id: str | None
    ) -> StreamState:
        params = {
            "command_id": command_id,
            "aggregate_type": self._aggregate_type,
            "aggregate_id": aggregate_id,
            "snapshot_schema": snapshot_schema,
        }
        recorded, asked, snapshot, stored = None, None, None, []
        # Plain tuples, fetched at once: this is the hot path of every command.
        assert self._connections is not None
        rows = LOAD_STREAM.run(self._connections, params)
        for part, version, schema, event_type, event_id, data, command, cause, causer, at in rows:
            if part == 2:
                metadata = EventMetadata(command, cause, causer)
                stored.append((event_type, schema, data, version, event_id, as_utc(at), metadata))
            elif part == 1:
                snapshot = Snapshot(aggregate_id, version, schema, data)
            else:
                recorded, asked = Outcome.from_dict(data), event_id or None
        events_loaded = events_from_stored(aggregate_id, stored)
        return StreamState(recorded, snapshot, events_loaded, asked)

    def latest_version(self, aggregate_id: str) -> int:
        with self._engine.connect() as conn:
            return self._version(conn, aggregate_id)

    def load_snapshot(self, aggregate_id: str) -> Snapshot | None:
        with self._reader.connect() as conn:
            return self._snapshot(conn, aggregate_id)

    def _snapshot(self, conn: Connection, aggregate_id: str) -> Snapshot | None:
        query = select(snapshots.c.version, snapshots.c.schema_version, snapshots.c.state).where(
            snapshots.c.aggregate_type == self._aggregate_type,
            snapshots.c.aggregate_id == aggregate_id,
        )
        row = conn.execute(query).first()
        if row is None:
            return None
        return Snapshot(aggregate_id, row.version, row.schema_version, row.state)

    def find_outcome(self, command_id: str) -> Outcome | None:
        with self._reader.connect() as conn:
            return self._find_outcome(conn, command_id)

    def _find_outcome(self, conn: Connection, command_id: str) -> Outcome | None:
        return self._logged(conn, command_id)[0]

    def _logged(self, conn: Connection, command_id: str) -> tuple[Outcome | None, str | None]:
        """The command's recorded outcome and fingerprint, or (None, None)."""
        query = select(command_log.c.outcome, command_log.c.fingerprint).where(
            command_log.c.command_id == command_id
        )
        row = conn.execute(query).first()
        return (None, None) if row is None else (Outcome.from_dict(row.outcome), row.fingerprint)

    # -- writing -----------------------------------------------------------------------

    def append(
        self,
        aggregate_id: str,
        expected_version: int,
        events_to_append: Sequence[Event],
        *,
        command_type: str | None = None,
        outcome: Outcome | None = None,
        fingerprint: str | None = None,
    ) -> int:
        rows = [event_to_row(event) for event in events_to_append]
        _check_stream(aggregate_id, expected_version, events_to_append)
        try:
            if self._postgres and rows:
                self._append_at_once(
                    aggregate_id, expected_version, rows, command_type, outcome, fingerprint
                )
                return expected_version + len(rows)
            with self._writer.begin() as conn:
                if outcome is not None:
                    self._record(conn, command_type or "", outcome, fingerprint)
                actual = self._version(conn, aggregate_id)
                if actual != expected_version:
                    raise VersionConflict(self._stream(aggregate_id), expected_version, actual)
                if rows:
                    conn.execute(events.insert(), rows)
        except IntegrityError as violation:
            if not _is_version_clash(violation):
                raise  # a caller bug (say, a reused event id), not a race to retry
            # Another writer committed this version first.
            actual = self.latest_version(aggregate_id)
            raise VersionConflict(
                self._stream(aggregate_id), expected_version, actual
            ) from violation
        return expected_version + len(rows)

    def _append_at_once(
        self,
        aggregate_id: str,
        expected_version: int,
        rows: list[dict[str, Any]],
        command_type: str | None,
        outcome: Outcome | None,
        fingerprint: str | None,
    ) -> None:
        params: dict[str, Any] = {
            "aggregate_type": self._aggregate_type,
            "aggregate_id": aggregate_id,
            "expected_version": expected_version,
        }
        for index, row in enumerate(rows):
            params[f"event_id_{index}"] = row["event_id"]
            params[f"version_{index}"] = row["version"]
            params[f"event_type_{index}"] = row["event_type"]
            params[f"schema_version_{index}"] = row["schema_version"]
            params[f"data_{index}"] = json.dumps(row["data"])
            params[f"metadata_{index}"] = json.dumps(row["metadata"])
            params[f"recorded_at_{index}"] = row["recorded_at"]
        if outcome is not None:
            params.update(
                command_id=outcome.command_id,
                command_type=command_type or "",
                status=outcome.status,
                outcome=json.dumps(outcome.to_dict()),
                command_recorded_at=datetime.now(UTC),
                fingerprint=fingerprint,
            )
        statement = append_statement(len(rows), outcome is not None)
        assert self._connections is not None
        [(recorded, known, actual, _)] = statement.run(self._connections, params)
        if outcome is not None and known:
            raise DuplicateCommand(outcome.command_id)
        if actual != expected_version:
            raise VersionConflict(self._stream(aggregate_id), expected_version, actual)
        if outcome is not None and not recorded:
            # Another delivery recorded it between this statement's snapshot and its insert.
            raise DuplicateCommand(outcome.command_id)

    def record_outcome(
        self, command_type: str, outcome: Outcome, fingerprint: str | None = None
    ) -> Outcome:
        try:
            with self._writer.begin() as conn:
                self._record(conn, command_type, outcome, fingerprint)
        except DuplicateCommand:
            recorded = self.find_outcome(outcome.command_id)
            if recorded is not None:
                return recorded
        return outcome

    def save_snapshot(self, snapshot: Snapshot) -> None:
        row = {
            "aggregate_type": self._aggregate_type,
            "aggregate_id": snapshot.aggregate_id,
            "version": snapshot.version,
            "schema_version": snapshot.schema_version,
            "state": snapshot.state,
            "taken_at": datetime.now(UTC),
        }
        with self._writer.begin() as conn:
            stmt = upsert_insert(conn, snapshots).values(row)
            # Only ever move a snapshot forward: a slow writer must not replace a newer one.
            newer = stmt.excluded.version > snapshots.c.version
            update = {key: stmt.excluded[key] for key in ("version", "schema_version", "state")}
            conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=["aggregate_type", "aggregate_id"],
                    set_={**update, "taken_at": stmt.excluded.taken_at},
                    where=newer,
                )
            )

    # -- helpers -----------------------------------------------------------------------

    def _version(self, conn: Connection, aggregate_id: str) -> int:
        query = select(func.coalesce(func.max(events.c.version), 0)).where(
            events.c.aggregate_type == self._aggregate_type,
            events.c.aggregate_id == aggregate_id,
        )
        return int(conn.execute(query).scalar_one())

    def _record(
        self, conn: Connection, command_type: str, outcome: Outcome, fingerprint: str | None
    ) -> None:
        row = {
            "command_id": outcome.command_id,
            "command_type": command_type,
            "aggregate_id": outcome.order_id,
            "status": outcome.status,
            "outcome": outcome.to_dict(),
            "recorded_at": datetime.now(UTC),
            "fingerprint": fingerprint,
        }
        # DO NOTHING is right here, unlike on events: a second delivery of a command must
        # find the first one's outcome, and the caller is told so.
        stmt = upsert_insert(conn, command_log).values(row).on_conflict_do_nothing()
        if conn.execute(stmt).rowcount == 0:
            raise DuplicateCommand(outcome.command_id)

    def _stream(self, aggregate_id: str) -> str:
        return f"{self._aggregate_type}-{aggregate_id}"


def _is_version_clash(violation: IntegrityError) -> bool:
    # PostgreSQL names the constraint; SQLite names its columns.
    message = str(violation.orig)
    return VERSION_CONSTRAINT in message or "events.aggregate_id, events.version" in message


def _check_stream(aggregate_id: str, expected_version: int, batch: Sequence[Event]) -> None:
    """Refuse a batch that would leave a gap or mix streams: a caller bug, never a race."""
    for offset, event in enumerate(batch, start=1):
        if event.aggregate_id != aggregate_id or event.version != expected_version + offset:
            raise ValueError(
                f"event {event.event_id} ({event.aggregate_id} v{event.version}) does not "
                f"follow {aggregate_id} v{expected_version + offset - 1}"
            )
