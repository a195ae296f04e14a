"""The command handler: load the Order, decide, append; on a lost race, load and decide again.

Every command ends in exactly one recorded ``Outcome``. A command id already in the
command log returns its recorded outcome and writes nothing, so a redelivered message
is harmless.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from commands import Command, Outcome
from commands.envelope import fingerprint
from domain.decide import Limits, decide
from domain.errors import CommandIdReused, DomainError, DuplicateCommand, VersionConflict
from domain.events import AGGREGATE_TYPE
from domain.order import Order, fold
from domain.ports import EventStore, GroupWriter, Regroup, StreamState, Writes
from domain.snapshots import SNAPSHOT_SCHEMA_VERSION, restore, take_snapshot


@dataclass(frozen=True)
class RetryPolicy:
    """How often to decide again after losing a race, with jittered exponential backoff."""

    max_attempts: int = 10
    base_delay: float = 0.002
    max_delay: float = 0.1

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {self.max_attempts}")
        if self.base_delay < 0 or self.max_delay < 0:
            raise ValueError("delays must not be negative")

    def delay(self, attempt: int, rng: random.Random) -> float:
        # Full jitter: racing writers spread out instead of colliding again in lockstep.
        return rng.uniform(0, min(self.max_delay, self.base_delay * 2**attempt))


def utc_now() -> datetime:
    return datetime.now(UTC)


def load_order(store: EventStore, order_id: str) -> Order:
    """The Order as of its newest event: newest usable snapshot plus the events after it."""
    return _fold_stream(
        order_id, store.load_stream(order_id, snapshot_schema=SNAPSHOT_SCHEMA_VERSION)
    )


def _fold_stream(order_id: str, stream: StreamState) -> Order:
    order = (restore(stream.snapshot) if stream.snapshot else None) or Order(order_id)
    return fold(order, stream.events)


class CommandHandler:
    def __init__(
        self,
        store: EventStore,
        *,
        retry: RetryPolicy | None = None,
        snapshot_every: int = 0,
        limits: Limits | None = None,
        clock: Callable[[], datetime] = utc_now,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        on_conflict: Callable[[], None] = lambda: None,
    ) -> None:
        """``on_conflict`` is told of each lost race (metrics count them)."""
        self._store = store
        self._on_conflict = on_conflict
        self._retry = retry or RetryPolicy()
        self._snapshot_every = snapshot_every
        self._limits = limits or Limits()
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()

    def handle(self, command: Command) -> Outcome:
        asked = fingerprint(command)
        conflict: VersionConflict | None = None
        for attempt in range(self._retry.max_attempts):
            if attempt:
                self._sleep(self._retry.delay(attempt, self._rng))
            try:
                return self._attempt(command, asked)
            except VersionConflict as lost_race:
                conflict = lost_race
                self._on_conflict()
            except DuplicateCommand:
                # Another delivery of this command won the race to record it.
                return self._recorded(command, asked, self._store)
        assert conflict is not None
        return self._finish(command, asked, "failed", conflict, self._store)

    def handle_many(self, commands: Sequence[Command]) -> list[Outcome]:
        """Decide ``commands`` together: their streams read at once, their writes in one
        transaction, one outcome each, in order.

        Each command is decided against the Order as the commands before it in the batch
        left it, and written under a savepoint of its own: a lost race or a redelivery
        touches only that command, which is decided again at once (the transaction
        reads the other writer's commit; nothing to wait for) or answered from the
        command log. Commands are written grouped by order (in their order within each):
        two batches on the same orders then take their locks in the same order. A store
        that can (``GroupWriter``) first tries all the writes in one go. Raises whatever
        the store raises outside of those (the batch then wrote nothing)."""
        if not commands:
            return []
        asked = [fingerprint(command) for command in commands]
        wanted = [(command.order_id, command.command_id) for command in commands]
        streams = self._store.load_streams(wanted, snapshot_schema=SNAPSHOT_SCHEMA_VERSION)
        with self._store.write_batch() as batch:
            if isinstance(batch, GroupWriter):
                # All writes in one statement first; when they cannot be (a race, a
                # redelivery, a command id twice), nothing of it stays and the batch is
                # decided again, afresh, one savepoint per command.
                try:
                    with batch.grouped() as group:
                        outcomes, orders, loaded_at = self._decide_batch(
                            group, commands, asked, streams
                        )
                except Regroup:
                    streams = batch.load_streams(wanted, snapshot_schema=SNAPSHOT_SCHEMA_VERSION)
                else:
                    self._snapshots_due(orders, loaded_at, batch)
                    return outcomes
            outcomes, orders, loaded_at = self._decide_batch(batch, commands, asked, streams)
            self._snapshots_due(orders, loaded_at, batch)
        return outcomes

    def _decide_batch(
        self,
        writes: Writes,
        commands: Sequence[Command],
        asked: Sequence[str],
        streams: Sequence[StreamState],
    ) -> tuple[list[Outcome], dict[str, Order], dict[str, int]]:
        """Each command decided and written through ``writes``, grouped by order: the
        outcomes in the commands' order, each order as the batch left it, and the version
        each was read at (for snapshots)."""
        outcomes: dict[int, Outcome] = {}
        orders: dict[str, Order] = {}  # each order as this batch has left it so far
        loaded_at: dict[str, int] = {}  # the version it was read at, for snapshots
        by_order = sorted(range(len(commands)), key=lambda index: commands[index].order_id)
        for index in by_order:
            outcomes[index] = self._in_batch(
                writes, commands[index], asked[index], streams[index], orders, loaded_at
            )
        return [outcomes[index] for index in range(len(commands))], orders, loaded_at

    def _snapshots_due(
        self, orders: dict[str, Order], loaded_at: dict[str, int], writes: Writes
    ) -> None:
        for order_id, order in orders.items():
            self._snapshot_if_due(order, loaded_at[order_id], writes)

    def fail(self, command: Command, error: str, message: str) -> Outcome:
        """Record ``command`` as failed without deciding it (the worker could not: a bug,
        or a database that stayed away past the command's retries). Returns what the
        command log holds for it, which is an earlier outcome if there is one."""
        failed = Outcome(
            status="failed",
            command_id=command.command_id,
            order_id=command.order_id,
            error=error,
            message=message[:500],
        )
        return self._record(command, fingerprint(command), failed, self._store)

    def _attempt(self, command: Command, asked: str) -> Outcome:
        # One read: a redelivered command finds its outcome here and writes nothing.
        stream = self._store.load_stream(
            command.order_id, snapshot_schema=SNAPSHOT_SCHEMA_VERSION, command_id=command.command_id
        )
        if stream.recorded is not None:
            return _answer(command, asked, stream)
        order = _fold_stream(command.order_id, stream)
        outcome, after = self._decide(command, asked, order, self._store)
        if after is not None:
            self._snapshot_if_due(after, order.version, self._store)
        return outcome

    def _in_batch(
        self,
        batch: Writes,
        command: Command,
        asked: str,
        stream: StreamState,
        orders: dict[str, Order],
        loaded_at: dict[str, int],
    ) -> Outcome:
        if stream.recorded is not None:
            return _answer(command, asked, stream)
        order_id = command.order_id
        order = orders.get(order_id)
        if order is None:
            order = orders[order_id] = _fold_stream(order_id, stream)
            loaded_at[order_id] = order.version
        conflict: VersionConflict | None = None
        for _ in range(self._retry.max_attempts):
            try:
                outcome, after = self._decide(command, asked, order, batch)
            except VersionConflict as lost_race:
                # Another writer committed first: its events are there to read now.
                conflict = lost_race
                self._on_conflict()
                stream = batch.load_stream(
                    order_id, snapshot_schema=SNAPSHOT_SCHEMA_VERSION, command_id=command.command_id
                )
                if stream.recorded is not None:
                    return _answer(command, asked, stream)
                order = orders[order_id] = _fold_stream(order_id, stream)
                continue
            except DuplicateCommand:
                return self._recorded(command, asked, batch)
            if after is not None:
                orders[order_id] = after
            return outcome
        assert conflict is not None
        return self._finish(command, asked, "failed", conflict, batch)

    def _decide(
        self, command: Command, asked: str, order: Order, writes: Writes
    ) -> tuple[Outcome, Order | None]:
        """Decide ``command`` on ``order`` and write what it decided: its outcome, and the
        Order after its events (None when it appended none)."""
        expected = command.expected_version
        if expected is not None and expected != order.version:
            stale = VersionConflict(f"{AGGREGATE_TYPE}-{order.order_id}", expected, order.version)
            return self._finish(command, asked, "rejected", stale, writes), None
        try:
            events = decide(order, command, at=self._clock(), limits=self._limits)
        except DomainError as broken_rule:
            return self._finish(command, asked, "rejected", broken_rule, writes), None
        outcome = Outcome(
            status="accepted",
            command_id=command.command_id,
            order_id=command.order_id,
            version=events[-1].version,
            events=tuple(event.event_type for event in events),
        )
        writes.append(
            command.order_id,
            order.version,
            events,
            command_type=command.command_type,
            outcome=outcome,
            fingerprint=asked,
        )
        return outcome, fold(order, events)

    def _finish(
        self, command: Command, asked: str, status: str, error: Exception, writes: Writes
    ) -> Outcome:
        outcome = Outcome(
            status="rejected" if status == "rejected" else "failed",
            command_id=command.command_id,
            order_id=command.order_id,
            error=type(error).__name__,
            message=str(error),
        )
        return self._record(command, asked, outcome, writes)

    def _record(self, command: Command, asked: str, outcome: Outcome, writes: Writes) -> Outcome:
        recorded = writes.record_outcome(command.command_type, outcome, asked)
        if recorded == outcome:
            return recorded
        # Another outcome was recorded first, maybe for another command with this id.
        return self._recorded(command, asked, writes)

    def _recorded(self, command: Command, asked: str, writes: Writes) -> Outcome:
        stream = writes.load_stream(
            command.order_id, snapshot_schema=SNAPSHOT_SCHEMA_VERSION, command_id=command.command_id
        )
        if stream.recorded is None:  # pragma: no cover - the store just said it exists
            raise RuntimeError(f"command {command.command_id} vanished from the command log")
        return _answer(command, asked, stream)

    def _snapshot_if_due(self, order: Order, previous_version: int, writes: Writes) -> None:
        every = self._snapshot_every
        if every and order.version // every > previous_version // every:
            writes.save_snapshot(take_snapshot(order))


def _answer(command: Command, asked: str, stream: StreamState) -> Outcome:
    """The recorded outcome, when it was recorded for this very command; a refusal,
    written nowhere, when the id came with another command before."""
    assert stream.recorded is not None
    if stream.recorded_fingerprint in (None, asked):  # None: recorded before fingerprints
        return stream.recorded
    reused = CommandIdReused(command.command_id, command.command_type, command.order_id)
    return Outcome(
        status="rejected",
        command_id=command.command_id,
        order_id=command.order_id,
        error=type(reused).__name__,
        message=str(reused),
    )
