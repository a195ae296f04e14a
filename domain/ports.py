"""What the domain needs from an event store. ``store/`` implements it; tests may fake it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from commands import Outcome
from domain.events import Event
from domain.snapshots import Snapshot


@dataclass(frozen=True)
class StreamState:
    """All a decision needs, read in one go: the command's recorded outcome (if it was
    handled before) with the fingerprint of the command it was recorded for, the newest
    usable snapshot, and the events after it."""

    recorded: Outcome | None
    snapshot: Snapshot | None
    events: list[Event]
    recorded_fingerprint: str | None = None


class EventStore(Protocol):
    def load_stream(
        self, aggregate_id: str, *, snapshot_schema: int, command_id: str | None = None
    ) -> StreamState:
        """The stream from its newest snapshot of ``snapshot_schema`` (other snapshots are
        ignored: the events are returned from the start), and the outcome recorded for
        ``command_id``, if any."""
        ...

    def save_snapshot(self, snapshot: Snapshot) -> None: ...

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
        """Append all of ``events`` or none, and record ``outcome`` (with the command's
        ``fingerprint``) in the same transaction.

        Returns the new version. Raises ``VersionConflict`` when the stream is not at
        ``expected_version``, ``DuplicateCommand`` when the outcome's command id is
        already recorded.
        """
        ...

    def record_outcome(
        self, command_type: str, outcome: Outcome, fingerprint: str | None = None
    ) -> Outcome:
        """Record the outcome of a command that appended nothing; returns what is recorded
        (an earlier outcome of the same command id wins)."""
        ...
