"""An in-memory ``domain.ports.EventStore`` that keeps the real stores' promises.

``TestFakeEventStore`` (tests/unit/test_fake_event_store.py) runs it through the same
contract suite as the SQLite and PostgreSQL stores (``tests.support.contract``). Like
them it keeps what it is given in its stored form, and decodes it on every read:

- an event is kept as its row (``store.codec.event_to_row``: the timestamp in UTC, the
  payload and metadata as JSON) and read back through ``store.codec.decode``, so every
  load returns fresh events, upcast like the real ones;
- an outcome is kept as its JSON (``Outcome.to_dict``), a snapshot's state as JSON;
- ``append`` refuses a batch that leaves a gap or mixes streams (``ValueError``), then
  raises ``DuplicateCommand`` for a command id already recorded (checked before the
  version, as the SQL stores do), then ``VersionConflict`` when the stream is not at
  ``expected_version``; it writes all events and the outcome together, or nothing;
- ``record_outcome`` returns the earlier outcome when the command id is recorded;
- snapshots only move forward;
- ``write_batch`` undoes the block's writes when it raises.

It also counts what the handler asks of it (``append_calls``, ``load_calls``,
``saved_snapshots``, ``load_streams_calls``, ``write_batches``), so tests can say "nothing was appended" or "the stream was read
from the snapshot's version"; ``streams``, ``outcomes``, ``command_types`` and
``snapshots`` are read-only views of what it holds, decoded like a read.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from commands import AddItem, Outcome
from domain.decide import decide
from domain.errors import DuplicateCommand, VersionConflict
from domain.events import AGGREGATE_TYPE, Event
from domain.order import Order, fold
from domain.ports import StreamState
from domain.snapshots import Snapshot
from store.codec import decode, event_to_row, stored_from_row
from store.event_store import check_stream


def _json(value: Any) -> Any:
    """``value`` as a JSON column gives it back: a copy, or TypeError if it is not JSON."""
    return json.loads(json.dumps(value))


@dataclass(frozen=True)
class _Logged:
    """A command log entry."""

    command_type: str
    outcome: dict[str, Any]
    fingerprint: str | None


@dataclass(frozen=True)
class _StoredSnapshot:
    version: int
    schema_version: int
    state: Any


class FakeEventStore:
    def __init__(self) -> None:
        self._rows: dict[str, list[dict[str, Any]]] = {}
        self._log: dict[str, _Logged] = {}
        self._snapshots: dict[str, _StoredSnapshot] = {}
        self.saved_snapshots: list[Snapshot] = []
        self.load_calls: list[tuple[str, int]] = []
        self.append_calls = 0
        self.load_streams_calls = 0
        self.write_batches = 0

    # -- reading -----------------------------------------------------------------------

    def load(
        self, aggregate_id: str, after_version: int = 0, until_version: int | None = None
    ) -> list[Event]:
        self.load_calls.append((aggregate_id, after_version))
        return self._decoded(aggregate_id, after_version, until_version)

    def latest_version(self, aggregate_id: str) -> int:
        rows = self._rows.get(aggregate_id)
        return int(rows[-1]["version"]) if rows else 0

    def load_snapshot(self, aggregate_id: str) -> Snapshot | None:
        stored = self._snapshots.get(aggregate_id)
        if stored is None:
            return None
        return Snapshot(aggregate_id, stored.version, stored.schema_version, _json(stored.state))

    def find_outcome(self, command_id: str) -> Outcome | None:
        logged = self._log.get(command_id)
        return None if logged is None else Outcome.from_dict(logged.outcome)

    def load_stream(
        self, aggregate_id: str, *, snapshot_schema: int, command_id: str | None = None
    ) -> StreamState:
        logged = self._log.get(command_id) if command_id else None
        recorded = None if logged is None else Outcome.from_dict(logged.outcome)
        asked = None if logged is None else logged.fingerprint
        snapshot = self.load_snapshot(aggregate_id)
        if snapshot is not None and snapshot.schema_version != snapshot_schema:
            snapshot = None
        after = snapshot.version if snapshot else 0
        events = self.load(aggregate_id, after_version=after)
        return StreamState(recorded, snapshot, events, asked)

    def load_streams(
        self, wanted: Sequence[tuple[str, str | None]], *, snapshot_schema: int
    ) -> list[StreamState]:
        self.load_streams_calls += 1
        return [
            self.load_stream(aggregate_id, snapshot_schema=snapshot_schema, command_id=command_id)
            for aggregate_id, command_id in wanted
        ]

    def stored_counts(self) -> dict[str, int]:
        """What it holds, counted as ``tests.support.store.row_counts`` counts a table's
        rows: events, command log entries, snapshots."""
        return {
            "events": sum(len(rows) for rows in self._rows.values()),
            "command_log": len(self._log),
            "snapshots": len(self._snapshots),
        }

    # -- read-only views, for the unit tests' assertions -------------------------------

    @property
    def streams(self) -> Mapping[str, list[Event]]:
        """Every stream that has events, decoded (not counted as a load)."""
        return MappingProxyType({key: self._decoded(key, 0, None) for key in self._rows})

    @property
    def outcomes(self) -> Mapping[str, Outcome]:
        return MappingProxyType(
            {key: Outcome.from_dict(logged.outcome) for key, logged in self._log.items()}
        )

    @property
    def command_types(self) -> Mapping[str, str]:
        return MappingProxyType({key: logged.command_type for key, logged in self._log.items()})

    @property
    def snapshots(self) -> Mapping[str, Snapshot]:
        return MappingProxyType(
            {key: snapshot for key in self._snapshots if (snapshot := self.load_snapshot(key))}
        )

    # -- writing -----------------------------------------------------------------------

    @contextmanager
    def write_batch(self) -> Iterator[FakeEventStore]:
        """Its own writes, each all or nothing already, undone together if the block
        raises. (Others see them before the end: a fake has no others.)"""
        self.write_batches += 1
        rows = {key: list(stream) for key, stream in self._rows.items()}
        log, snapshots = dict(self._log), dict(self._snapshots)
        try:
            yield self
        except BaseException:
            self._rows, self._log, self._snapshots = rows, log, snapshots
            raise

    def save_snapshot(self, snapshot: Snapshot) -> None:
        self.saved_snapshots.append(snapshot)
        current = self._snapshots.get(snapshot.aggregate_id)
        if current is None or snapshot.version > current.version:
            self._snapshots[snapshot.aggregate_id] = _StoredSnapshot(
                snapshot.version, snapshot.schema_version, _json(snapshot.state)
            )

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
        self.append_calls += 1
        return self._write(
            aggregate_id,
            expected_version,
            events,
            command_type=command_type,
            outcome=outcome,
            fingerprint=fingerprint,
        )

    def record_outcome(
        self, command_type: str, outcome: Outcome, fingerprint: str | None = None
    ) -> Outcome:
        earlier = self.find_outcome(outcome.command_id)
        if earlier is not None:
            return earlier
        self._log[outcome.command_id] = _Logged(command_type, _json(outcome.to_dict()), fingerprint)
        return outcome

    def _write(
        self,
        aggregate_id: str,
        expected_version: int,
        events: Sequence[Event],
        *,
        command_type: str | None,
        outcome: Outcome | None,
        fingerprint: str | None = None,
    ) -> int:
        # Every check, and every conversion that can fail, before any write: all or nothing.
        check_stream(aggregate_id, expected_version, events)
        if outcome is not None and outcome.command_id in self._log:
            raise DuplicateCommand(outcome.command_id)
        actual = self.latest_version(aggregate_id)
        if actual != expected_version:
            raise VersionConflict(f"{AGGREGATE_TYPE}-{aggregate_id}", expected_version, actual)
        rows = [
            {**row, "data": _json(row["data"]), "metadata": _json(row["metadata"])}
            for row in map(event_to_row, events)
        ]
        logged = {}
        if outcome is not None:
            entry = _Logged(command_type or "", _json(outcome.to_dict()), fingerprint)
            logged[outcome.command_id] = entry
        if rows:
            self._rows.setdefault(aggregate_id, []).extend(rows)
        self._log.update(logged)
        return expected_version + len(rows)

    def _decoded(
        self, aggregate_id: str, after_version: int, until_version: int | None
    ) -> list[Event]:
        rows = [
            row
            for row in self._rows.get(aggregate_id, [])
            if row["version"] > after_version
            and (until_version is None or row["version"] <= until_version)
        ]
        return decode(aggregate_id, [stored_from_row(row) for row in rows])


class RacingEventStore(FakeEventStore):
    """Another writer gets in first on the next ``conflicts`` appends (None: on every one).

    The rival really appends an ``ItemAdded`` of ``rival-item`` to the stream, so the
    handler's append then fails the ordinary version check.
    """

    def __init__(self, conflicts: int | None = 0) -> None:
        super().__init__()
        self.conflicts = conflicts
        self.rival_writes = 0

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
        if self.conflicts is None or self.conflicts > 0:
            if self.conflicts is not None:
                self.conflicts -= 1
            self._rival_appends(aggregate_id)
        return super().append(
            aggregate_id,
            expected_version,
            events,
            command_type=command_type,
            outcome=outcome,
            fingerprint=fingerprint,
        )

    def _rival_appends(self, aggregate_id: str) -> None:
        order = fold(Order(aggregate_id), self._decoded(aggregate_id, 0, None))
        rival = AddItem(aggregate_id, item_id="rival-item", quantity=1, price="1.00")
        events = decide(order, rival, at=datetime.now(UTC))
        outcome = Outcome(
            status="accepted",
            command_id=rival.command_id,
            order_id=aggregate_id,
            version=events[-1].version,
            events=tuple(event.event_type for event in events),
        )
        self._write(
            aggregate_id, order.version, events, command_type=rival.command_type, outcome=outcome
        )
        self.rival_writes += 1
