"""What the domain needs from an event store. ``store/`` implements it; tests may fake it."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

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


class Writes(Protocol):
    """What deciding a command writes through: the store itself (one transaction per
    write), or a batch (``EventStore.write_batch``: one transaction for many)."""

    def load_stream(
        self, aggregate_id: str, *, snapshot_schema: int, command_id: str | None = None
    ) -> StreamState: ...

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

    def record_outcome(
        self, command_type: str, outcome: Outcome, fingerprint: str | None = None
    ) -> Outcome: ...

    def save_snapshot(self, snapshot: Snapshot) -> None: ...


class BatchWriter(Writes, Protocol):
    """The writes of one transaction (``EventStore.write_batch``). Each ``append``,
    ``record_outcome`` and ``save_snapshot`` behaves as the store's own, but under a
    savepoint of its own: one that raises (``VersionConflict``, ``DuplicateCommand``)
    leaves nothing behind and the others' writes in place. ``load_stream`` reads what
    is committed plus this transaction's own writes. Nothing is visible to others, and
    nothing is durable, until the batch commits."""


class Regroup(Exception):
    """A batch's group write did not happen (a command it cannot buffer, a stream that
    moved, a racing writer): nothing of it is written, decide the batch command by
    command instead."""


@runtime_checkable
class GroupWriter(BatchWriter, Protocol):
    """A batch that can also write all its commands in one statement (PostgreSQL)."""

    def grouped(self) -> AbstractContextManager[Writes]:
        """Writes buffered in the block, all written at its end in one go, or none:
        raises ``Regroup`` (at any write, or at the end) when they cannot be."""
        ...

    def load_streams(
        self, wanted: Sequence[tuple[str, str | None]], *, snapshot_schema: int
    ) -> list[StreamState]:
        """``EventStore.load_streams`` in this transaction."""
        ...


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

    def load_streams(
        self, wanted: Sequence[tuple[str, str | None]], *, snapshot_schema: int
    ) -> list[StreamState]:
        """``load_stream`` for each (aggregate id, command id) pair, in order, read at
        once (one statement on PostgreSQL, so from one snapshot of the database)."""
        ...

    def write_batch(self) -> AbstractContextManager[BatchWriter]:
        """One write transaction: committed when the block ends, rolled back (nothing
        written) when it raises."""
        ...
