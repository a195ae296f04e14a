"""The projection runner: brings each projection up to the head of the global log.

It is generic: for a projection it reads the log after its checkpoint (gap-free, in
batches), applies the batch, and commits the rows and the new checkpoint in one
transaction, so a duplicate or late wake-up changes nothing. One runner per projection
at a time: the others find its lock taken and return at once. An event the projection
cannot apply is parked and the projection stops, reported as stuck, until ``retry``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import Engine

from readmodels.apply import apply_batch
from readmodels.checkpoints import park, read_state, save_state, try_lock, unpark
from readmodels.order_history import OrderHistory
from readmodels.projection import Projection
from readmodels.projections import PROJECTIONS
from readmodels.rows import TableRows
from store.engine import WRITE
from store.global_log import GlobalLogReader

log = logging.getLogger(__name__)

RunState = Literal["caught_up", "busy", "stuck"]


@dataclass(frozen=True)
class RunResult:
    projection: str
    applied: int
    state: RunState


class UnknownProjection(KeyError):
    def __init__(self, name: str) -> None:
        super().__init__(f"no projection named {name!r}; known: {', '.join(sorted(PROJECTIONS))}")


class ProjectionRunner:
    def __init__(
        self,
        engine: Engine,
        reader: GlobalLogReader,
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
        return [self.run(name) for name in self._projections]

    def run(self, name: str) -> RunResult:
        projection = self.projection(name)
        applied = 0
        while True:
            state, count = self._run_batch(projection)
            applied += count
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
            raise UnknownProjection(name) from None

    def _run_batch(self, projection: Projection) -> tuple[RunState | None, int]:
        """One transaction: lock, read, apply, write, move the checkpoint."""
        name = projection.name
        with self._writer.begin() as conn:
            if not try_lock(conn, name):
                return "busy", 0
            state = read_state(conn, name)
            if state.stuck:
                return "stuck", 0
            batch = self._reader.read_in(conn, state.checkpoint, self._batch_size)
            if not batch:
                return "caught_up", 0
            rows = TableRows(conn, projection.table)
            applied, failure = apply_batch(projection, batch, self._history, rows)
            rows.flush()
            checkpoint = batch[applied - 1].checkpoint if applied else state.checkpoint
            if failure is None:
                save_state(conn, name, checkpoint)
                return None, applied
            reason = failure.describe()
            park(conn, name, failure.recorded, reason)
            save_state(conn, name, checkpoint, stuck=True, error=reason)
        log.error("projection %s parked event %s: %s", name, failure.recorded.event_id, reason)
        return "stuck", applied
