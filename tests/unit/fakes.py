"""An in-memory ``domain.ports.EventStore`` that keeps the real store's promises.

- ``append`` writes all events and the outcome together, or nothing;
- it raises ``DuplicateCommand`` for a command id already recorded (checked first, as the
  SQL store records the outcome before checking the version), then ``VersionConflict``
  when the stream is not at ``expected_version``;
- ``record_outcome`` returns the earlier outcome when the command id is recorded;
- snapshots only move forward.

It also counts what the handler asks of it, so tests can say "nothing was appended"
or "the stream was read from the snapshot's version".
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from commands import AddItem, Outcome
from domain.decide import decide
from domain.errors import DuplicateCommand, VersionConflict
from domain.events import AGGREGATE_TYPE, Event
from domain.order import Order, fold
from domain.ports import StreamState
from domain.snapshots import Snapshot


class FakeEventStore:
    def __init__(self) -> None:
        self.streams: dict[str, list[Event]] = {}
        self.outcomes: dict[str, Outcome] = {}
        self.fingerprints: dict[str, str | None] = {}
        self.command_types: dict[str, str] = {}
        self.snapshots: dict[str, Snapshot] = {}
        self.saved_snapshots: list[Snapshot] = []
        self.load_calls: list[tuple[str, int]] = []
        self.append_calls = 0

    # -- reading -----------------------------------------------------------------------

    def load(self, aggregate_id: str, after_version: int = 0) -> list[Event]:
        self.load_calls.append((aggregate_id, after_version))
        return [e for e in self.streams.get(aggregate_id, []) if e.version > after_version]

    def latest_version(self, aggregate_id: str) -> int:
        stream = self.streams.get(aggregate_id, [])
        return stream[-1].version if stream else 0

    def load_snapshot(self, aggregate_id: str) -> Snapshot | None:
        return self.snapshots.get(aggregate_id)

    def find_outcome(self, command_id: str) -> Outcome | None:
        return self.outcomes.get(command_id)

    def load_stream(
        self, aggregate_id: str, *, snapshot_schema: int, command_id: str | None = None
    ) -> StreamState:
        recorded = self.outcomes.get(command_id) if command_id else None
        asked = self.fingerprints.get(command_id) if command_id else None
        snapshot = self.snapshots.get(aggregate_id)
        if snapshot is not None and snapshot.schema_version != snapshot_schema:
            snapshot = None
        after = snapshot.version if snapshot else 0
        events = self.load(aggregate_id, after_version=after)
        return StreamState(recorded, snapshot, events, asked)

    # -- writing -----------------------------------------------------------------------

    def save_snapshot(self, snapshot: Snapshot) -> None:
        self.saved_snapshots.append(snapshot)
        current = self.snapshots.get(snapshot.aggregate_id)
        if current is None or snapshot.version > current.version:
            self.snapshots[snapshot.aggregate_id] = snapshot

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
        earlier = self.outcomes.get(outcome.command_id)
        if earlier is not None:
            return earlier
        self.outcomes[outcome.command_id] = outcome
        self.command_types[outcome.command_id] = command_type
        self.fingerprints[outcome.command_id] = fingerprint
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
        # Every check before any write: all or nothing.
        if outcome is not None and outcome.command_id in self.outcomes:
            raise DuplicateCommand(outcome.command_id)
        actual = self.latest_version(aggregate_id)
        if actual != expected_version:
            raise VersionConflict(f"{AGGREGATE_TYPE}-{aggregate_id}", expected_version, actual)
        for offset, event in enumerate(events, start=1):
            if event.aggregate_id != aggregate_id or event.version != expected_version + offset:
                raise ValueError(f"event {event.event_id} does not follow v{expected_version}")
        self.streams.setdefault(aggregate_id, []).extend(events)
        if outcome is not None:
            self.outcomes[outcome.command_id] = outcome
            self.command_types[outcome.command_id] = command_type or ""
            self.fingerprints[outcome.command_id] = fingerprint
        return expected_version + len(events)


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
        order = fold(Order(aggregate_id), self.streams.get(aggregate_id, []))
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
