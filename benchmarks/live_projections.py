"""What the live read models cost per event, beside a rebuild of the same events.

``python -m benchmarks.live_projections`` builds a scratch database beside
``ORDERS_DATABASE_URL`` (PostgreSQL), appends small orders' commands through the
command handler in bursts of k, and after each burst runs what a wake-up runs
(``ProjectionRunner.run_all()``), as a projection worker does after a burst of accepted
commands. Then it rebuilds every read model from the same events
(``readmodels.maintenance.rebuild``). It reports, per event of the log (all five
projections together):

- ``live_us_per_event``: CPU time of this process in the wake-ups (``time.process_time``;
  appending the commands is not counted), and ``rebuild_us_per_event`` beside it;
- ``server_us_per_event``: CPU time of the PostgreSQL backends serving the projections'
  connections (their ``/proc/<pid>/stat``, so only with the server on this machine;
  pg_stat_statements is not loaded by default and is not needed);
- statements and transactions per wake-up (counted by the projections' psycopg2
  connections: an engine event listener would itself slow every statement down).

A run of ``k`` events stands for a wake-up after k accepted commands: one per command
when wake-ups are sent at once, some 20 at half load with the wake-up window
(``readmodels.wake.WAKE_WINDOW``). Not counted: the wake-up task's own Celery and Redis
work around ``run_all()``.

Timings on a busy machine are noisy: every figure is CPU time, the median of
``--repeats`` runs. ``--profile K`` prints where a wake-up's time goes for bursts of K;
``--runner module:Class`` measures another runner in the same way (an older one kept
aside, say); ``--json PATH`` writes the figures.
"""

from __future__ import annotations

import cProfile
import gc
import io
import json
import os
import pstats
import statistics
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from importlib import import_module
from pathlib import Path
from typing import Any, ClassVar

import click
import psycopg2.extensions

from benchmarks.scratch import scratch_database
from bootstrap import Settings, order_history
from commands import AddItem, CancelOrder, Command, CreateOrder, PayOrder
from domain.handler import CommandHandler
from readmodels.maintenance import rebuild
from readmodels.projections import PROJECTIONS
from readmodels.runner import ProjectionRunner
from store import open_event_store, open_global_log
from store.engine import build_engine

BURSTS = (1, 5, 20, 100)
COMMANDS_PER_ORDER = 4
INTERLEAVED = 5
"""Orders whose commands take turns, as concurrent customers' do."""


class _CountingCursor(psycopg2.extensions.cursor):  # type: ignore[misc]
    """Counts the statements sent (each a round trip), whoever sends them."""

    def execute(self, query: Any, vars: Any = None) -> Any:
        _Counts.statements += 1
        return super().execute(query, vars)

    def executemany(self, query: Any, vars_list: Any) -> Any:
        _Counts.statements += 1
        return super().executemany(query, vars_list)


class _CountingConnection(psycopg2.extensions.connection):  # type: ignore[misc]
    """The projections' connections: counted at the driver, so that nothing is added to
    SQLAlchemy's path (an engine event listener would cost every statement its dispatch)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.cursor_factory = _CountingCursor
        with super().cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            _Counts.pids.add(int(cursor.fetchone()[0]))
        super().rollback()

    def commit(self) -> None:
        if self.status == psycopg2.extensions.STATUS_BEGIN:
            _Counts.transactions += 1
        super().commit()

    def rollback(self) -> None:
        if self.status == psycopg2.extensions.STATUS_BEGIN:
            _Counts.transactions += 1
        super().rollback()


class _Counts:
    statements = 0
    transactions = 0
    pids: ClassVar[set[int]] = set()
    ticks_per_second = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    readable = True

    @classmethod
    def server_seconds(cls) -> float:
        """CPU time of the PostgreSQL backends of the projections' connections."""
        total = 0
        for pid in cls.pids:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                cls.readable = False  # not on this machine, or not ours to read
                continue
            total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / cls.ticks_per_second


@dataclass
class Sample:
    """One measured phase: CPU here and on the server, per event and per wake-up."""

    events: float = 0
    wake_ups: int = 0
    cpu: float = 0.0
    server: float = 0.0
    statements: int = 0
    transactions: int = 0
    held_back: int = 0

    def per_event_us(self, seconds: float) -> float:
        return seconds / self.events * 1e6 if self.events else float("nan")

    def per_wake_up(self, count: int) -> float:
        return count / self.wake_ups if self.wake_ups else float("nan")


@contextmanager
def _measured(sample: Sample) -> Iterator[None]:
    statements, transactions = _Counts.statements, _Counts.transactions
    server_before = _Counts.server_seconds()
    cpu_before = time.process_time()
    try:
        yield
    finally:
        sample.cpu += time.process_time() - cpu_before
        sample.server += _Counts.server_seconds() - server_before
        sample.statements += _Counts.statements - statements
        sample.transactions += _Counts.transactions - transactions


def order_commands(count: int, tag: str) -> list[Command]:
    """``count`` small orders, four commands each (created, two items, paid or
    cancelled), the commands of ``INTERLEAVED`` orders at a time taking turns."""
    commands: list[Command] = []
    for first in range(0, count, INTERLEAVED):
        group = []
        for number in range(first, min(first + INTERLEAVED, count)):
            order_id = f"live-{tag}-{number:06d}"
            ending: Command = (
                PayOrder(order_id, payment_method="card")
                if number % 4
                else CancelOrder(order_id, reason="changed my mind")
            )
            group.append(
                [
                    CreateOrder(order_id, customer_id=f"customer-{number % 97}"),
                    AddItem(
                        order_id, item_id=f"item-{number % 31}", quantity=2, price=Decimal("1.25")
                    ),
                    AddItem(
                        order_id, item_id=f"gift-{number % 7}", quantity=1, price=Decimal("9.50")
                    ),
                    ending,
                ]
            )
        for turn in range(COMMANDS_PER_ORDER):
            commands += [order[turn] for order in group]
    return commands


def _bursts(commands: Sequence[Command], size: int) -> Iterator[Sequence[Command]]:
    for start in range(0, len(commands), size):
        yield commands[start : start + size]


@dataclass
class Bench:
    url: str
    runner_factory: Callable[..., Any]
    handler: CommandHandler = field(init=False)
    runner: Any = field(init=False)

    def __post_init__(self) -> None:
        # Two engines: the projections' backends are measured apart from the handler's.
        self.write_engine = build_engine(self.url)
        self.handler = CommandHandler(open_event_store(self.write_engine), snapshot_every=0)
        self.engine = build_engine(
            self.url, connect_args={"connection_factory": _CountingConnection}
        )
        self.reader = open_global_log(self.engine)
        self.store = open_event_store(self.engine)
        # One runner for the whole run, with its warm order history: a worker process.
        self.runner = self.runner_factory(self.engine, self.reader, order_history(self.store))

    def close(self) -> None:
        self.engine.dispose()
        self.write_engine.dispose()

    def live(self, orders: int, burst: int, profiler: cProfile.Profile | None = None) -> Sample:
        sample = Sample()
        commands = order_commands(orders, f"{burst}-{uuid.uuid4().hex[:6]}")
        for commands_of_burst in _bursts(commands, burst):
            for command in commands_of_burst:
                outcome = self.handler.handle(command)
                assert outcome.accepted, outcome
            sample.held_back += self._wake_up(sample, profiler)
        # What a burst left held back (open transactions elsewhere on the server) is
        # projected by later wake-ups: counted too.
        for _ in range(400):
            if self._wake_up(sample, profiler) == 0:
                break
            time.sleep(0.05)
        return sample

    def _wake_up(self, sample: Sample, profiler: cProfile.Profile | None) -> int:
        with _measured(sample):
            if profiler is not None:
                profiler.enable()
            results = self.runner.run_all()
            if profiler is not None:
                profiler.disable()
        sample.wake_ups += 1
        states = {result.state for result in results}
        assert states <= {"caught_up", "held_back"}, results
        # Per event of the log: each projection applies each event once.
        sample.events += sum(result.applied for result in results) / len(results)
        return sum(result.state == "held_back" for result in results)

    def rebuild(self) -> Sample:
        sample = Sample(wake_ups=1)
        counted: list[int] = []
        history = order_history(self.store)
        with _measured(sample):
            rebuild(self.engine, self.reader, history, list(PROJECTIONS.values()), counted.append)
        sample.events = sum(counted)
        return sample


def live_figures(
    url: str,
    orders: int,
    bursts: Sequence[int] = BURSTS,
    repeats: int = 3,
    runner_factory: Callable[..., Any] = ProjectionRunner,
    echo: Callable[[str], None] = click.echo,
) -> dict[str, float]:
    """Each figure the median of ``repeats`` runs; a run is a live phase per burst size,
    then a rebuild of the whole log so far."""
    bench = Bench(url, runner_factory)
    samples: dict[str, list[Sample]] = {}
    try:
        bench.live(INTERLEAVED, 1)  # warm the pools, the caches and the statements
        for repeat in range(repeats):
            for burst in bursts:
                samples.setdefault(f"k{burst}", []).append(bench.live(orders, burst))
            samples.setdefault("rebuild", []).append(bench.rebuild())
            echo(f"  run {repeat + 1} of {repeats} done")
    finally:
        bench.close()
    return _figures(samples, _Counts.readable)


def _figures(samples: dict[str, list[Sample]], server_readable: bool) -> dict[str, float]:
    figures: dict[str, float] = {}
    for key, runs in samples.items():

        def median(of: Callable[[Sample], float], runs: list[Sample] = runs) -> float:
            return statistics.median(of(run) for run in runs)

        figures[f"{key}_us_per_event"] = median(lambda s: s.per_event_us(s.cpu))
        figures[f"{key}_server_us_per_event"] = (
            median(lambda s: s.per_event_us(s.server)) if server_readable else float("nan")
        )
        figures[f"{key}_us_per_wake_up"] = median(lambda s: s.cpu / s.wake_ups * 1e6)
        figures[f"{key}_statements_per_wake_up"] = median(lambda s: s.per_wake_up(s.statements))
        figures[f"{key}_transactions_per_wake_up"] = median(lambda s: s.per_wake_up(s.transactions))
        figures[f"{key}_held_back"] = median(lambda s: s.held_back)
        figures[f"{key}_events"] = median(lambda s: s.events)
    return figures


def table(figures: dict[str, float], bursts: Sequence[int]) -> str:
    rebuild_us = figures["rebuild_us_per_event"]
    lines = [
        f"{'phase':<14} {'us/event':>9} {'x rebuild':>9} {'server us/ev':>12} "
        f"{'us/wake-up':>10} {'stmts/wake':>10} {'txns/wake':>9} {'held back':>9}"
    ]
    for key in [f"k{burst}" for burst in bursts] + ["rebuild"]:
        label = "rebuild" if key == "rebuild" else f"live, k={key[1:]}"
        us = figures[f"{key}_us_per_event"]
        lines.append(
            f"{label:<14} {us:>9.1f} {us / rebuild_us:>9.2f} "
            f"{figures[f'{key}_server_us_per_event']:>12.1f} "
            f"{figures[f'{key}_us_per_wake_up']:>10.0f} "
            f"{figures[f'{key}_statements_per_wake_up']:>10.1f} "
            f"{figures[f'{key}_transactions_per_wake_up']:>9.1f} "
            f"{figures[f'{key}_held_back']:>9.0f}".replace("nan", "  -")
        )
    lines.append(
        "us: CPU time of this process (median of runs); server: the PostgreSQL backends' "
        "CPU time; held back: projection runs that found events behind an open transaction"
    )
    return "\n".join(lines)


def profile(
    url: str,
    orders: int,
    burst: int,
    runner_factory: Callable[..., Any],
) -> str:
    bench = Bench(url, runner_factory)
    profiler = cProfile.Profile(time.process_time)  # CPU time, not waits on the server
    try:
        bench.live(INTERLEAVED, 1)
        sample = bench.live(orders, burst, profiler)
    finally:
        bench.close()
    out = io.StringIO()
    out.write(f"profile of {sample.wake_ups} wake-ups, {sample.events} events, k={burst}\n")
    stats = pstats.Stats(profiler, stream=out).strip_dirs()
    stats.sort_stats("tottime").print_stats(25)
    stats.sort_stats("cumulative").print_stats(35)
    return out.getvalue()


def _runner_factory(spec: str | None) -> Callable[..., Any]:
    """``module:Class``: another runner to compare, built as ``ProjectionRunner`` is."""
    if not spec:
        return ProjectionRunner
    module, _, name = spec.partition(":")
    factory: Callable[..., Any] = getattr(import_module(module), name or "ProjectionRunner")
    return factory


@click.command()
@click.option("--orders", default=250, show_default=True, help="Orders per burst size and run.")
@click.option(
    "--bursts",
    default=",".join(map(str, BURSTS)),
    show_default=True,
    help="Commands per wake-up.",
)
@click.option("--repeats", default=3, show_default=True, help="Runs; figures are medians.")
@click.option("--profile", "profile_burst", type=int, default=None, help="Profile bursts of K.")
@click.option("--runner", "runner_spec", default=None, help="module:Class of another runner.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None)
def main(
    orders: int,
    bursts: str,
    repeats: int,
    profile_burst: int | None,
    runner_spec: str | None,
    json_path: Path | None,
) -> None:
    """CPU per event of the live read models, beside a rebuild of the same events.

    Needs PostgreSQL (ORDERS_DATABASE_URL): it works in a scratch database beside it.
    """
    settings = Settings.from_env()
    sizes = tuple(int(size) for size in bursts.split(","))
    factory = _runner_factory(runner_spec)
    with ExitStack() as stack:
        url = stack.enter_context(
            scratch_database(settings.database_url, f"_bench_live_{os.getpid()}")
        )
        if profile_burst is not None:
            click.echo(profile(url, orders, profile_burst, factory))
            return
        started = time.perf_counter()
        gc.collect()
        figures = live_figures(url, orders, sizes, repeats, factory)
        events = figures[f"k{sizes[0]}_events"]
        click.echo(
            f"{orders} orders ({events:.0f} events) per burst size, {repeats} runs, "
            f"{time.perf_counter() - started:.0f} s"
        )
        click.echo(table(figures, sizes))
        if json_path is not None:
            json_path.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main(sys.argv[1:])
