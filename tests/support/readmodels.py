"""The write side and the read side of one database, wired together, a small shop's
evening of commands to run through them, and snapshots of the read-model tables."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine, select

from bootstrap import order_history
from commands import Command, Outcome
from domain.handler import CommandHandler
from readmodels.maintenance import ProjectionStatus, status
from readmodels.projections import PROJECTIONS
from readmodels.projections.base import Projection
from readmodels.runner import ProjectionRunner, RunResult
from readmodels.tables import (
    customer_stats,
    order_lines,
    order_summary,
    product_sales,
    projection_checkpoints,
    revenue_daily,
)
from store import open_event_store, open_global_log
from store.codec import as_utc
from tests.support.commands import add, cancel, create, pay, remove

READ_MODEL_TABLES = (order_summary, order_lines, customer_stats, product_sales, revenue_daily)
START = datetime(2024, 5, 1, 22, 0, tzinfo=UTC)


class Clock:
    """The handler's clock: each command is stamped ``step`` after the previous one."""

    def __init__(self, start: datetime = START, step: timedelta = timedelta(minutes=7)) -> None:
        self.now = start
        self.step = step

    def __call__(self) -> datetime:
        self.now += self.step
        return self.now


@dataclass
class System:
    """The write side and the read side of one database, wired as workers/bootstrap.py does."""

    engine: Engine
    clock: Clock = field(default_factory=Clock)
    projections: Mapping[str, Projection] = field(default_factory=lambda: PROJECTIONS)
    batch_size: int = 500

    def __post_init__(self) -> None:
        self.store = open_event_store(self.engine)
        self.handler = CommandHandler(self.store, clock=self.clock)
        self.reader = open_global_log(self.engine)
        self.runner = self.new_runner()

    def new_runner(self, batch_size: int | None = None) -> ProjectionRunner:
        """A runner with its own (cold) order history, as another worker process has."""
        return ProjectionRunner(
            self.engine,
            self.reader,
            order_history(self.store),
            projections=self.projections,
            batch_size=batch_size or self.batch_size,
        )

    def send(self, *commands: Command) -> list[Outcome]:
        outcomes = [self.handler.handle(command) for command in commands]
        for command, outcome in zip(commands, outcomes, strict=True):
            assert outcome.accepted, (command, outcome)
        return outcomes

    def status(self) -> dict[str, ProjectionStatus]:
        return {s.name: s for s in status(self.engine, self.reader, self.projections.values())}

    def catch_up(
        self, runner: ProjectionRunner | None = None, timeout: float = 30.0
    ) -> list[RunResult]:
        """Run every projection until none lags (or is stuck); the last run's results,
        each with the events applied over all the runs.

        On PostgreSQL the log is held back while any older transaction anywhere in the
        cluster is open (other test sessions share the server), so one run may not be
        enough; on SQLite it always is.
        """
        runner = runner or self.runner
        deadline = time.monotonic() + timeout
        applied: dict[str, int] = dict.fromkeys(runner.names, 0)
        while True:
            results = runner.run_all()
            for result in results:
                applied[result.projection] += result.applied
            report = self.status()
            if all(s.stuck or s.lag_events == 0 for s in report.values()):
                break
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        # The last run's states, with what every run applied.
        return [replace(result, applied=applied[result.projection]) for result in results]


# Three phases of a small shop's evening, run with projection runs in between. Every
# customer's orders are all *created* within one phase: see
# test_projection_runner.py::test_a_customers_second_order_in_a_later_run_on_sqlite for
# why (a SQLite bug in customer_stats).
PHASES: tuple[tuple[Command, ...], ...] = (
    (
        create("o1", "alice"),
        add("o1", "apple", 3, "1.50"),
        add("o1", "banana", 2, "0.75"),
        create("o2", "bob"),
        add("o2", "dime", 3, "0.10"),
        add("o2", "fifth", 1, "0.20"),
        create("o3", "alice"),
        add("o3", "caviar", 1, "99.99"),
        pay("o1"),
        create("o4", "carol"),
        add("o4", "apple", 1, "1.50"),
    ),
    (
        pay("o2", "cash"),
        add("o3", "apple", 2, "1.50"),
        cancel("o3", "too expensive"),
        add("o4", "apple", 4, "1.50"),
        add("o4", "pear", 1, "2.25"),
        remove("o4", "apple"),
        create("o5", "dave"),
        add("o5", "banana", 10, "0.75"),
    ),
    (
        pay("o4", "debit_card"),
        pay("o5"),
        create("o6", "erin"),
        add("o6", "apple", 1, "1.50"),
        create("o7", "frank"),
    ),
)


def run_phases(system: System, runs_between: int = 1) -> None:
    for phase in PHASES:
        system.send(*phase)
        for _ in range(runs_between):
            system.catch_up()


# -- snapshots ----------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return as_utc(value)
    if isinstance(value, Decimal):
        return (type(value), str(value))
    return value


def snapshot_tables(engine: Engine, tables: Iterable[Any] = READ_MODEL_TABLES) -> dict[str, Any]:
    """Every row of every read-model table, in key order, with comparable values."""
    taken: dict[str, Any] = {}
    with engine.connect() as conn:
        for table in tables:
            keys = list(table.primary_key.columns)
            rows = conn.execute(select(table).order_by(*keys)).mappings()
            taken[table.name] = [{k: _plain(v) for k, v in row.items()} for row in rows]
    return taken


def snapshot_checkpoints(engine: Engine, *, with_time: bool = True) -> dict[str, tuple[Any, ...]]:
    with engine.connect() as conn:
        rows = conn.execute(select(projection_checkpoints)).mappings().all()
    return {
        row["name"]: (
            row["transaction_id"],
            row["position"],
            row["stuck"],
            row["error"],
            *((as_utc(row["updated_at"]),) if with_time else ()),
        )
        for row in rows
    }
