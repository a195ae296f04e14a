"""The projection runner: brings the projections up to the head of the global log.

It is generic. A wake-up runs every projection at once, in rounds of one transaction
each: it takes the runs' lock, reads every checkpoint in one statement, reads the log
once (gap-free, a batch at a time) from the lowest of them, decodes each event and folds
its Order once, and gives each projection the events after its own checkpoint. Each
applies them to its rows; every projection's rows and checkpoint are committed
together, so a duplicate or late wake-up changes nothing. One run at a time: another
finds the lock taken and returns, reporting its projections busy (the wake-up then
looks again soon). An event a projection cannot apply is parked in the same transaction
and that projection stops, reported as stuck, until ``retry``; the others go on.

A database error in a shared round (rows the database refuses, say) rolls the round
back, and each projection of it is then run alone, in transactions of its own, where a
failure touches only that projection.
"""

from __future__ import annotations

import logging
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError

from readmodels.batch import Failure, Prepared, apply_prepared, prepare
from readmodels.checkpoints import (
    ProjectionState,
    park,
    read_state,
    read_states,
    save_state,
    save_states,
    try_runs_lock,
    unpark,
)
from readmodels.order_history import OrderHistory
from readmodels.projections import PROJECTIONS
from readmodels.projections.base import Projection
from readmodels.rows import TableRows
from store.backend import WRITE
from store.errors import is_unreachable
from store.log import Checkpoint, GlobalLog, RecordedEvent

log = logging.getLogger(__name__)

RunState = Literal["caught_up", "held_back", "busy", "stuck", "failed"]


@dataclass(frozen=True)
class RunResult:
    projection: str
    applied: int
    state: RunState


class UnknownProjection(KeyError):
    def __init__(self, name: str, known: Iterable[str]) -> None:
        super().__init__(f"no projection named {name!r}; known: {', '.join(sorted(known))}")


class _RowsRefused(Exception):
    """The database refused the rows a batch produced (a value out of range, say)."""

    def __init__(self, first: RecordedEvent, error: DBAPIError) -> None:
        super().__init__(str(error))
        self.first = first
        self.error = error


@dataclass
class _Step:
    """What one round did for one projection: its state (None: there may be more to
    read), the events it applied, and the event it parked with the reason."""

    state: RunState | None
    done: Sequence[RecordedEvent] = ()
    parked: tuple[RecordedEvent, str] | None = None


@dataclass
class _Read:
    """One read of the log, from ``start``, decoded and folded once for every
    projection it feeds (``prepared`` stops before the first event that cannot be)."""

    start: Checkpoint
    batch: list[RecordedEvent]
    full: bool
    prepared: list[Prepared] = field(default_factory=list)
    failure: Failure | None = None

    def covers(self, start: Checkpoint) -> bool:
        """Whether this read holds everything readable after ``start`` that one of
        ``start``'s own would return."""
        if start < self.start:
            return False
        return not self.full or start < self.batch[-1].checkpoint


class ProjectionRunner:
    def __init__(
        self,
        engine: Engine,
        reader: GlobalLog,
        history: OrderHistory,
        projections: Mapping[str, Projection] = PROJECTIONS,
        batch_size: int = 500,
    ) -> None:
        self._writer = engine.execution_options(**WRITE)
        self._reader = reader
        self._history = history
        self._projections = projections
        self._batch_size = batch_size

    @property
    def names(self) -> list[str]:
        return list(self._projections)

    def run_all(self) -> list[RunResult]:
        """Run every projection, together; one that fails does not hold back the others."""
        names = list(self._projections)
        applied = dict.fromkeys(names, 0)
        states: dict[str, RunState] = {}
        pending = names
        while pending:
            try:
                steps = self._round(pending, self._batch_size)
            except Exception as error:
                if is_unreachable(error):
                    raise
                log.warning(
                    "a shared run of %s failed, each runs alone: %s",
                    ", ".join(pending),
                    " ".join(str(error).split())[:300],
                )
                for name in pending:
                    result = self._run_isolated(name)
                    applied[name] += result.applied
                    states[name] = result.state
                break
            pending = []
            for name, step in steps.items():
                applied[name] += len(step.done)
                if step.state is None:
                    pending.append(name)
                else:
                    states[name] = step.state
        return [RunResult(name, applied[name], states[name]) for name in names]

    def run(self, name: str) -> RunResult:
        """Run one projection alone (``retry``, and after a shared run failed)."""
        projection = self.projection(name)
        applied, limit = 0, self._batch_size
        while True:
            try:
                step = self._round([name], limit)[name]
            except _RowsRefused as refused:
                if limit > 1:
                    # Some event in the batch made rows the database refuses: go one
                    # event at a time until that event is the batch, then park it.
                    limit = 1
                    continue
                self._park_refused(projection, refused)
                return RunResult(name, applied, "stuck")
            applied += len(step.done)
            if step.state is not None:
                return RunResult(name, applied, step.state)

    def _run_isolated(self, name: str) -> RunResult:
        try:
            return self.run(name)
        except Exception as error:
            if is_unreachable(error):
                raise
            log.exception("projection %s failed; it will be tried again", name)
            return RunResult(name, 0, "failed")

    def retry(self, name: str) -> RunResult:
        """Take the projection's parked events back and run it again from its checkpoint."""
        self.projection(name)
        with self._writer.begin() as conn:
            unpark(conn, name)
        return self.run(name)

    def projection(self, name: str) -> Projection:
        try:
            return self._projections[name]
        except KeyError:
            raise UnknownProjection(name, self._projections) from None

    def _round(self, names: Sequence[str], limit: int) -> dict[str, _Step]:
        """One transaction for ``names``: lock, read the checkpoints, read the log once
        (up to ``limit`` events), apply, write the rows, move the checkpoints."""
        with self._writer.begin() as conn:
            if not try_runs_lock(conn):
                return {name: _Step("busy") for name in names}
            states = read_states(conn, names)
            steps = {name: _Step("stuck") for name in names if states[name].stuck}
            running = [states[name] for name in names if not states[name].stuck]
            if running:
                steps.update(self._apply(conn, running, limit))
        for name, step in steps.items():
            if step.done and log.isEnabledFor(logging.DEBUG):
                _log_applied(name, step.done)
            if step.parked is not None:
                _log_parked(name, *step.parked)
        return {name: steps[name] for name in names}

    def _apply(
        self, conn: Connection, states: Sequence[ProjectionState], limit: int
    ) -> dict[str, _Step]:
        reads: list[_Read] = []
        for start in sorted({state.checkpoint for state in states}):
            if not any(read.covers(start) for read in reads):
                batch = self._reader.read_in(conn, start, limit)
                read = _Read(start, batch, full=len(batch) >= limit)
                read.prepared, read.failure = prepare(batch, self._history)
                reads.append(read)
        steps: dict[str, _Step] = {}
        moved: list[ProjectionState] = []
        ended: dict[str, Checkpoint] = {}
        for state in states:
            read = next(read for read in reads if read.covers(state.checkpoint))
            step, checkpoint = self._apply_one(conn, state, read)
            steps[state.name] = step
            if step.parked is not None:
                error = step.parked[1]
                moved.append(ProjectionState(state.name, checkpoint, stuck=True, error=error))
            elif step.done:
                moved.append(ProjectionState(state.name, checkpoint))
            if step.state is None and not read.full:
                ended[state.name] = checkpoint
        if moved:
            save_states(conn, moved)
        # Everything readable was read: held back or caught up, said now rather than in
        # another transaction that would find nothing. Usually one look for all.
        held: dict[Checkpoint, bool] = {}
        for name, checkpoint in ended.items():
            if checkpoint not in held:
                held[checkpoint] = self._reader.holds_back(conn, checkpoint)
            steps[name].state = "held_back" if held[checkpoint] else "caught_up"
        return steps

    def _apply_one(
        self, conn: Connection, state: ProjectionState, read: _Read
    ) -> tuple[_Step, Checkpoint]:
        """Apply the events of ``read`` after the projection's checkpoint to its rows;
        park the first it cannot apply. Returns the step and the new checkpoint."""
        name = state.name
        projection = self._projections[name]
        batch = read.batch
        skip = bisect_right(batch, state.checkpoint, key=lambda recorded: recorded.checkpoint)
        if skip <= len(read.prepared):
            prepared, failure = read.prepared[skip:], read.failure
        else:  # past an event the others could not take: its own events, decoded anew
            prepared, failure = prepare(batch[skip:], self._history)
        rows = TableRows(conn, projection.table)
        applied, failed = apply_prepared(projection, prepared, rows, failure)
        try:
            rows.flush()
        except (DataError, IntegrityError) as refused:
            raise _RowsRefused(batch[skip], refused) from refused
        done = batch[skip : skip + applied]
        checkpoint = done[-1].checkpoint if done else state.checkpoint
        if failed is None:
            return _Step(None, done), checkpoint
        reason = failed.describe()
        park(conn, name, failed.recorded, reason)
        return _Step("stuck", done, (failed.recorded, reason)), checkpoint

    def _park_refused(self, projection: Projection, refused: _RowsRefused) -> None:
        reason = f"{type(refused.error.orig).__name__}: {refused.error.orig}".strip()
        with self._writer.begin() as conn:
            state = read_state(conn, projection.name)
            park(conn, projection.name, refused.first, reason)
            save_state(conn, projection.name, state.checkpoint, stuck=True, error=reason)
        _log_parked(projection.name, refused.first, reason)


def _about(name: str, recorded: RecordedEvent) -> dict[str, Any]:
    """A log line's fields for one event: the order, and the command and conversation it
    came from, so an operator can follow a producer's correlation id into the models."""
    metadata = recorded.stored.metadata
    return {
        "projection": name,
        "order_id": recorded.aggregate_id,
        "command_id": metadata.command_id,
        "correlation_id": metadata.correlation_id,
    }


def _log_applied(name: str, done: Sequence[RecordedEvent]) -> None:
    for recorded in done:
        log.debug(
            "projection %s applied %s of order %s",
            name,
            recorded.event_type,
            recorded.aggregate_id,
            extra=_about(name, recorded),
        )


def _log_parked(name: str, recorded: RecordedEvent, reason: str) -> None:
    log.error(
        "projection %s parked event %s: %s",
        name,
        recorded.event_id,
        reason,
        extra=_about(name, recorded),
    )
