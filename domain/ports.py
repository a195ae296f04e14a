"""What the domain needs from an event store. ``store/`` implements it; tests may fake it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from commands import Outcome
from domain.events import Event
from domain.snapshots import Snapshot


class EventStore(Protocol):
    def load(self, aggregate_id: str, after_version: int = 0) -> list[Event]:
        """The order's events with a version above ``after_version``, oldest first."""
        ...

    def latest_version(self, aggregate_id: str) -> int: ...

    def load_snapshot(self, aggregate_id: str) -> Snapshot | None: ...

    def save_snapshot(self, snapshot: Snapshot) -> None: ...

    def append(
        self,
        aggregate_id: str,
        expected_version: int,
        events: Sequence[Event],
        *,
        command_type: str | None = None,
        outcome: Outcome | None = None,
    ) -> int:
        """Append all of ``events`` or none, and record ``outcome`` in the same transaction.

        Returns the new version. Raises ``VersionConflict`` when the stream is not at
        ``expected_version``, ``DuplicateCommand`` when the outcome's command id is
        already recorded.
        """
        ...

    def record_outcome(self, command_type: str, outcome: Outcome) -> Outcome:
        """Record the outcome of a command that appended nothing; returns what is recorded
        (an earlier outcome of the same command id wins)."""
        ...

    def find_outcome(self, command_id: str) -> Outcome | None: ...
