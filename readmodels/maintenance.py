"""Operating the read models: status, rebuild and verify."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Column, Engine, MetaData, Table, select

from readmodels.batch import Failure, Prepared, apply_prepared, prepare
from readmodels.checkpoints import (
    ProjectionState,
    hold_lock,
    parked_count,
    read_state,
    release_lock,
    save_state,
    unpark,
)
from readmodels.order_history import OrderHistory
from readmodels.projections.base import Key, Projection, Row
from readmodels.rows import MemoryRows, write_rows
from store import backend
from store.backend import WRITE
from store.codec import as_utc
from store.log import Checkpoint, GlobalLog

REBUILD_BATCH = 2_000


@dataclass(frozen=True)
class ProjectionStatus:
    name: str
    checkpoint: Checkpoint
    head: Checkpoint
    lag_events: int
    lag_seconds: float
    stuck: bool
    error: str | None
    parked: int


def status(
    engine: Engine, reader: GlobalLog, projections: Iterable[Projection]
) -> list[ProjectionStatus]:
    now = datetime.now(UTC)
    report = []
    with engine.connect() as conn:
        head = reader.head(conn)
        for projection in projections:
            state = read_state(conn, projection.name)
            backlog = reader.backlog(conn, state.checkpoint)
            lag = (now - backlog.oldest).total_seconds() if backlog.oldest else 0.0
            report.append(
                ProjectionStatus(
                    projection.name,
                    state.checkpoint,
                    head,
                    backlog.events,
                    max(lag, 0.0),
                    state.stuck,
                    state.error,
                    parked_count(conn, projection.name),
                )
            )
    return report


class RebuildFailed(RuntimeError):
    def __init__(self, name: str, failure: Failure) -> None:
        super().__init__(
            f"rebuilding {name} stopped at event {failure.recorded.event_id}: "
            f"{failure.describe()}; the live table is unchanged"
        )


def rebuild(
    engine: Engine,
    reader: GlobalLog,
    history: OrderHistory,
    projections: Projection | Sequence[Projection],
    progress: Callable[[int], None] = lambda _: None,
) -> Checkpoint:
    """Build projections from the whole log into new tables, then swap them in.

    One pass over the log feeds every projection asked for, in memory: the models are
    far smaller than the log, and a row touched by a thousand events is written once.
    One transaction then fills new tables, replaces the live rows with theirs and moves
    the checkpoints: a query sees the old models or the new ones, never a partial one.
    The projections' locks are held throughout, so their incremental runners wait
    instead of racing.

    The new tables are TEMPORARY, on that transaction's connection alone: a rebuild
    needs no CREATE on the schema, only the TEMPORARY privilege on the database (which
    PUBLIC has by default), so the workers' role can run it; they vanish with a failed
    transaction, and two rebuilds never meet in them.
    """
    chosen = [projections] if isinstance(projections, Projection) else list(projections)
    writer = engine.execution_options(**WRITE)
    shadows = {p.name: _shadow(p.table) for p in chosen}
    models = {p.name: MemoryRows() for p in chosen}
    with engine.connect() as lock:
        # Taken and let go in one transaction, left open meanwhile: behind PgBouncer in
        # transaction mode only an open transaction keeps the same server session, and
        # a lock taken on one session and let go on another would stay held forever. It
        # writes nothing, so it has no transaction id and holds no reader of the log back.
        for projection in chosen:
            hold_lock(lock, projection.name)
        try:
            checkpoint = Checkpoint()
            with (
                _cycle_collection_paused(),
                engine.connect() as conn,
                conn.begin(),
                closing(reader.batches_in(conn, checkpoint, REBUILD_BATCH)) as batches,
            ):
                for batch in batches:
                    prepared, failure = prepare(batch, history)
                    for projection in chosen:
                        _, failed = apply_prepared(
                            projection, prepared, models[projection.name], failure
                        )
                        if failed is not None:
                            raise RebuildFailed(projection.name, failed)
                    checkpoint = batch[-1].checkpoint
                    progress(len(batch))
            with writer.begin() as conn:
                # Filled first: the live tables are locked only from their DELETE on.
                for projection in chosen:
                    shadow = shadows[projection.name]
                    shadow.create(conn)
                    write_rows(conn, shadow, list(models[projection.name].existing().values()))
                for projection in chosen:
                    shadow = shadows[projection.name]
                    conn.execute(projection.table.delete())
                    columns = [column.name for column in projection.table.columns]
                    conn.execute(projection.table.insert().from_select(columns, select(shadow)))
                    unpark(conn, projection.name)
                    save_state(conn, projection.name, checkpoint)
                    shadow.drop(conn)
            return checkpoint
        finally:
            for projection in chosen:
                release_lock(lock, projection.name)
            lock.commit()


@contextmanager
def _cycle_collection_paused() -> Iterator[None]:
    """For a pass over the log, which builds a million acyclic objects (events, Orders,
    rows) that reference counting frees. The cycle collector would walk the growing
    models over and over meanwhile: 40% of a rebuild's time. Any cycle made during
    the pass is collected once it is back on."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _shadow(table: Table) -> Table:
    """A TEMPORARY table with ``table``'s columns and primary key (the bulk upsert needs
    it), and no other index. Named apart: on PostgreSQL a temporary table would hide the
    live table of the same name."""
    columns = [
        Column(c.name, c.type, primary_key=c.primary_key, nullable=c.nullable, autoincrement=False)
        for c in table.columns
    ]
    return Table(f"{table.name}__rebuild", MetaData(), *columns, prefixes=["TEMPORARY"])


@dataclass(frozen=True)
class Difference:
    projection: str
    key: Key
    problem: str

    def __str__(self) -> str:
        return f"{self.projection} {self.key!r}: {self.problem}"


def verify(
    engine: Engine,
    reader: GlobalLog,
    history: OrderHistory,
    projections: Iterable[Projection],
) -> list[Difference]:
    """Recompute every model from the event store and compare it with its table.

    Everything is read in one snapshot, and each model is recomputed up to its own
    checkpoint, so a projection that is merely behind is not reported as wrong.
    """
    projections = list(projections)
    differences: list[Difference] = []
    with engine.connect() as plain:
        conn = backend(plain).one_snapshot(plain)
        with conn.begin():
            states = {p.name: read_state(conn, p.name) for p in projections}
            expected = {p.name: MemoryRows() for p in projections}
            last = max((state.checkpoint for state in states.values()), default=Checkpoint())
            with (
                _cycle_collection_paused(),
                closing(reader.batches_in(conn, Checkpoint(), REBUILD_BATCH)) as batches,
            ):
                for batch in batches:
                    if batch[0].checkpoint > last:
                        break
                    _recompute(projections, states, expected, *prepare(batch, history))
            for projection in projections:
                rows = conn.execute(select(projection.table)).mappings()
                actual = {projection.key_of(dict(row)): dict(row) for row in rows}
                differences += _compare(
                    projection.name, expected[projection.name].existing(), actual
                )
    return differences


def _recompute(
    projections: Sequence[Projection],
    states: Mapping[str, ProjectionState],
    expected: Mapping[str, MemoryRows],
    prepared: Sequence[Prepared],
    failure: Failure | None,
) -> None:
    """Apply a batch to each expected model, up to that projection's own checkpoint."""
    for projection in projections:
        upto = states[projection.name].checkpoint
        mine = [item for item in prepared if item.recorded.checkpoint <= upto]
        stopped = failure if failure and failure.recorded.checkpoint <= upto else None
        _, failed = apply_prepared(projection, mine, expected[projection.name], stopped)
        if failed is not None:
            raise RebuildFailed(projection.name, failed)


def _compare(name: str, expected: Mapping[Key, Row], actual: Mapping[Key, Row]) -> list[Difference]:
    found = []
    for key in sorted(expected.keys() - actual.keys(), key=repr):
        found.append(Difference(name, key, "missing from the table"))
    for key in sorted(actual.keys() - expected.keys(), key=repr):
        found.append(Difference(name, key, "in the table but not in the events"))
    for key in sorted(expected.keys() & actual.keys(), key=repr):
        for column, want in expected[key].items():
            have = actual[key].get(column)
            if _normal(want) != _normal(have):
                found.append(Difference(name, key, f"{column} is {have!r}, events say {want!r}"))
    return found


def _normal(value: Any) -> Any:
    if isinstance(value, datetime):
        return as_utc(value)
    if isinstance(value, Decimal):
        return value.quantize(Decimal("0.01"))
    return value
