"""The projection runner: brings each projection up to the head of the global log.

It is generic: for a projection it reads the log after its checkpoint (gap-free, in
batches), applies the batch, and commits the rows and the new checkpoint in one
transaction, so a duplicate or late wake-up changes nothing. One runner per projection
at a time: the others find its lock taken and return at once. An event the projection
cannot apply is parked and the projection stops, reported as stuck, until ``retry``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import Engine
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError

from readmodels.batch import apply_batch
from readmodels.checkpoints import park, read_state, save_state, try_lock, unpark
from readmodels.order_history import OrderHistory
from readmodels.projections import PROJECTIONS
from readmodels.projections.base import Projection
from readmodels.rows import TableRows
from readmodels.wake import RerunRequests
from store.backend import WRITE
from store.errors import is_unreachable
from store.log import GlobalLog, RecordedEvent

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


class ProjectionRunner:
    def __init__(
        self,
        engine: Engine,
        reader: GlobalLog,
        history: OrderHistory,
        projections: Mapping[str, Projection] = PROJECTIONS,
        batch_size: int = 500,
        reruns: RerunRequests | None = None,
    ) -> None:
        self._writer = engine.execution_options(**WRITE)
        self._reader = reader
        self._history = history
        self._projections = projections
        self._batch_size = batch_size
        self._reruns = reruns or RerunRequests(None)

    @property
    def names(self) -> list[str]:
        return list(self._projections)

    def run_all(self) -> list[RunResult]:
        """Run every projection; one that fails does not hold back the others."""
        results = []
        for name in self._projections:
            try:
                results.append(self.run(name))
            except Exception as error:
                if is_unreachable(error):
                    raise
                log.exception("projection %s failed; it will be tried again", name)
                results.append(RunResult(name, 0, "failed"))
        return results

    def run(self, name: str) -> RunResult:
        projection = self.projection(name)
        self._reruns.request(name)
        applied, limit, holding = 0, self._batch_size, False
        while True:
            try:
                state, done = self._run_batch(projection, limit, first=not holding)
                holding = True
                applied += len(done)
                if done and log.isEnabledFor(logging.DEBUG):
                    _log_applied(name, done)
                if state in ("caught_up", "held_back") and self._reruns.take(name):
                    continue  # another run asked while this one held the lock
            except _RowsRefused as refused:
                if limit > 1:
                    # Some event in the batch made rows the database refuses: go one
                    # event at a time until that event is the batch, then park it.
                    limit = 1
                    continue
                self._park_refused(projection, refused)
                return RunResult(name, applied, "stuck")
            if state is not None:
                return RunResult(name, applied, state)

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

    def _run_batch(
        self, projection: Projection, limit: int, *, first: bool
    ) -> tuple[RunState | None, list[RecordedEvent]]:
        """One transaction: lock, read, apply, write, move the checkpoint. Returns the
        state (None: there may be more) and the events it applied."""
        name = projection.name
        with self._writer.begin() as conn:
            if not try_lock(conn, name):
                return "busy", []
            if first:
                self._reruns.clear(name)  # this run reads everything committed from now on
            state = read_state(conn, name)
            if state.stuck:
                return "stuck", []
            batch = self._reader.read_in(conn, state.checkpoint, limit)
            if not batch:
                # Nothing readable; committed events behind an older open transaction
                # are held back, and whoever woke us should look again soon.
                held = self._reader.holds_back(conn, state.checkpoint)
                return ("held_back" if held else "caught_up"), []
            rows = TableRows(conn, projection.table)
            applied, failure = apply_batch(projection, batch, self._history, rows)
            try:
                rows.flush()
            except (DataError, IntegrityError) as refused:
                raise _RowsRefused(batch[0], refused) from refused
            checkpoint = batch[applied - 1].checkpoint if applied else state.checkpoint
            if failure is None:
                save_state(conn, name, checkpoint)
                if len(batch) < limit:
                    # Everything readable was read: say so now rather than in another
                    # transaction that would find nothing (a third of a wake-up's work).
                    held = self._reader.holds_back(conn, checkpoint)
                    return ("held_back" if held else "caught_up"), batch[:applied]
                return None, batch[:applied]
            reason = failure.describe()
            park(conn, name, failure.recorded, reason)
            save_state(conn, name, checkpoint, stuck=True, error=reason)
        _log_parked(name, failure.recorded, reason)
        return "stuck", batch[:applied]

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


def _log_applied(name: str, done: list[RecordedEvent]) -> None:
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
