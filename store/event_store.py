"""The event store on SQLAlchemy Core: what its backends share.

Optimistic concurrency comes from ``UNIQUE(aggregate_type, aggregate_id, version)``:
of two writers that decided on the same version, the database lets one commit and the
other gets ``VersionConflict``. Events and the command's outcome commit together.

Each backend (``store.postgres``, ``store.sqlite``) says how a stream is loaded for a
decision and how a decision is appended; the rest is here, in plain Core statements.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime

from sqlalchemy import Connection, Engine, func, select
from sqlalchemy.exc import IntegrityError

from commands import Outcome
from domain.errors import DuplicateCommand, VersionConflict
from domain.events import AGGREGATE_TYPE, Event
from domain.ports import BatchWriter, StreamState
from domain.snapshots import Snapshot
from store.backend import WRITE, Backend
from store.codec import EVENT_COLUMNS, decode, event_to_row, stored_from_row
from store.schema import VERSION_CONSTRAINT, command_log, command_task_ids, events, snapshots

__all__ = ["VERSION_CONSTRAINT", "SqlEventStore", "check_stream"]


class SqlEventStore(ABC):
    def __init__(
        self, engine: Engine, backend: Backend, aggregate_type: str = AGGREGATE_TYPE
    ) -> None:
        self._engine = engine
        self._backend = backend
        self._writer = engine.execution_options(**WRITE)
        self._reader = engine
        self._aggregate_type = aggregate_type

    # -- the hot path: each backend's own --------------------------------------------

    @abstractmethod
    def load_stream(
        self, aggregate_id: str, *, snapshot_schema: int, command_id: str | None = None
    ) -> StreamState: ...

    @abstractmethod
    def append(
        self,
        aggregate_id: str,
        expected_version: int,
        events: Sequence[Event],
        *,
        command_type: str | None = None,
        outcome: Outcome | None = None,
        fingerprint: str | None = None,
    ) -> int: ...

    @abstractmethod
    def load_streams(
        self, wanted: Sequence[tuple[str, str | None]], *, snapshot_schema: int
    ) -> list[StreamState]: ...

    @abstractmethod
    def write_batch(self) -> AbstractContextManager[BatchWriter]: ...

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
        stored = [stored_from_row(row) for row in conn.execute(query).mappings()]
        return decode(aggregate_id, stored)

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
        """The outcome recorded for ``command_id``, or for the command sent under that
        task id (``record_task_id``)."""
        with self._reader.connect() as conn:
            recorded = self._logged(conn, command_id)[0]
            if recorded is not None:
                return recorded
            query = select(command_task_ids.c.command_id).where(
                command_task_ids.c.task_id == command_id
            )
            aliased = conn.execute(query).scalar_one_or_none()
            return None if aliased is None else self._logged(conn, aliased)[0]

    def _logged(self, conn: Connection, command_id: str) -> tuple[Outcome | None, str | None]:
        """The command's recorded outcome and fingerprint, or (None, None)."""
        query = select(command_log.c.outcome, command_log.c.fingerprint).where(
            command_log.c.command_id == command_id
        )
        row = conn.execute(query).first()
        return (None, None) if row is None else (Outcome.from_dict(row.outcome), row.fingerprint)

    # -- writing -----------------------------------------------------------------------

    def _append_in_transaction(
        self,
        aggregate_id: str,
        expected_version: int,
        batch: Sequence[Event],
        command_type: str | None,
        outcome: Outcome | None,
        fingerprint: str | None,
    ) -> int:
        """``append`` in Core statements, in one write transaction."""
        try:
            with self._writer.begin() as conn:
                return self._append_on(
                    conn, aggregate_id, expected_version, batch, command_type, outcome, fingerprint
                )
        except IntegrityError as violation:
            raise self._conflict_or(violation, aggregate_id, expected_version) from violation

    def _append_on(
        self,
        conn: Connection,
        aggregate_id: str,
        expected_version: int,
        batch: Sequence[Event],
        command_type: str | None,
        outcome: Outcome | None,
        fingerprint: str | None,
    ) -> int:
        """``append``'s statements, in ``conn``'s transaction (the caller's to end)."""
        rows = [event_to_row(event) for event in batch]
        if outcome is not None:
            self._record(conn, command_type or "", outcome, fingerprint)
        actual = self._version(conn, aggregate_id)
        if actual != expected_version:
            raise VersionConflict(self._stream(aggregate_id), expected_version, actual)
        if rows:
            conn.execute(events.insert(), rows)
        return expected_version + len(rows)

    def _conflict_or(
        self,
        violation: IntegrityError,
        aggregate_id: str,
        expected_version: int,
        conn: Connection | None = None,
    ) -> Exception:
        """The ``VersionConflict`` a unique violation on the stream's version means, or
        the violation itself when it is about anything else (a reused event id: a caller
        bug, not a race to retry)."""
        if not self._is_version_clash(violation):
            return violation
        return self._conflict(aggregate_id, expected_version, conn)

    def _conflict(
        self, aggregate_id: str, expected_version: int, conn: Connection | None = None
    ) -> VersionConflict:
        """Another writer has the version first. ``conn``: the transaction that goes on
        after the failed write (a batch's, whose own writes count); else a new one."""
        actual = (
            self.latest_version(aggregate_id) if conn is None else self._version(conn, aggregate_id)
        )
        return VersionConflict(self._stream(aggregate_id), expected_version, actual)

    @abstractmethod
    def _is_version_clash(self, violation: IntegrityError) -> bool:
        """Whether ``violation`` is the stream-version constraint's (each database words
        it differently)."""

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

    def record_task_id(self, task_id: str, command_id: str) -> None:
        """Remember that ``command_id`` came as the Celery task ``task_id``."""
        row = {"task_id": task_id, "command_id": command_id}
        with self._writer.begin() as conn:
            conn.execute(
                self._backend.upsert(command_task_ids).values(row).on_conflict_do_nothing()
            )

    def save_snapshot(self, snapshot: Snapshot) -> None:
        with self._writer.begin() as conn:
            self._save_snapshot(conn, snapshot)

    def _save_snapshot(self, conn: Connection, snapshot: Snapshot) -> None:
        row = {
            "aggregate_type": self._aggregate_type,
            "aggregate_id": snapshot.aggregate_id,
            "version": snapshot.version,
            "schema_version": snapshot.schema_version,
            "state": snapshot.state,
            "taken_at": datetime.now(UTC),
        }
        stmt = self._backend.upsert(snapshots).values(row)
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
        stmt = self._backend.upsert(command_log).values(row).on_conflict_do_nothing()
        if conn.execute(stmt).rowcount == 0:
            raise DuplicateCommand(outcome.command_id)

    def _stream(self, aggregate_id: str) -> str:
        return f"{self._aggregate_type}-{aggregate_id}"


def check_stream(aggregate_id: str, expected_version: int, batch: Sequence[Event]) -> None:
    """Refuse a batch that would leave a gap or mix streams: a caller bug, never a race."""
    for offset, event in enumerate(batch, start=1):
        if event.aggregate_id != aggregate_id or event.version != expected_version + offset:
            raise ValueError(
                f"event {event.event_id} ({event.aggregate_id} v{event.version}) does not "
                f"follow {aggregate_id} v{expected_version + offset - 1}"
            )
