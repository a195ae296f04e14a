"""Where one database stops: what a command costs PostgreSQL, and what that allows.

``python -m benchmarks.database_limit`` starts a PostgreSQL cluster of its own (``initdb``
in a temporary folder, ``fsync`` on, ``pg_stat_statements`` loaded; never the
configured server, whose other work would blur every figure) and runs the command
handler against it in this process, with no broker, in four ways: one command per call
(``CommandHandler.handle``, what a worker does by default) and batches of ``BATCH``
(``handle_many``, ``orders worker --batch``), each with ``synchronous_commit`` on and off.
Every run is the same mix of commands, an order's life: ``CreateOrder``, two
``AddItem``, ``PayOrder``.

Per command it reports:

- WAL bytes (``pg_current_wal_lsn()`` before and after) and full-page images
  (``pg_stat_wal``); commits (the WAL's COMMIT records, ``pg_walinspect``) and WAL
  flushes (``wal_sync``): commits per flush is group commit;
- statements (``pg_stat_statements`` calls, utility statements included) and round
  trips (counted at the client: each ``execute``, and each ``BEGIN`` and ``COMMIT``
  psycopg2 sends);
- the server's CPU time: every process of the cluster, from ``/proc`` (parse, plan,
  execute, commit, WAL writer, checkpointer), beside the executor's time alone
  (``pg_stat_statements.total_exec_time``) and this client's own CPU time;
- commands/s and commits/s at the run's concurrency, on this machine (the client shares
  its cores with the server: the server-CPU bound below is what a primary with its cores
  to itself would reach).

From those: commands/s one primary core sustains (1 / server CPU per command), which the
docs extend to bigger machines (docs/scaling.md).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import click
import psycopg2
import psycopg2.extensions
from sqlalchemy import Engine

from bootstrap import migrate
from commands import AddItem, Command, CreateOrder, PayOrder
from domain.handler import CommandHandler
from store import build_engine, open_event_store
from store.postgres.driver import without_prepared_statements

BATCH = 20
"""Commands per ``handle_many`` call: ``orders worker --batch``'s default size."""

UNPREPARED = "unprepared"
"""One command per call, the statements sent whole each time, not prepared: what the
store does behind PgBouncer in transaction mode (``ORDERS_PREPARED_STATEMENTS=off``)."""

DATABASE = "orders_limit"
STATS_DELAY = 2.0
TICKS = os.sysconf("SC_CLK_TCK")


# -- a cluster of its own -----------------------------------------------------------------


def _postgres_bin(name: str) -> str:
    found = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    if found:
        return str(found[-1])
    path = shutil.which(name)
    if path is None:
        raise SystemExit(f"PostgreSQL's {name} is not installed")
    return path


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Cluster:
    """``initdb`` and ``pg_ctl`` in a temporary folder, as ``postgres`` when run as root
    (PostgreSQL refuses root). Durable as a production server is (``fsync`` on), with
    checkpoints kept out of the runs (``max_wal_size``) but for the one before each."""

    SETTINGS = (
        "shared_preload_libraries=pg_stat_statements",
        "pg_stat_statements.track_utility=on",
        "max_wal_size=8GB",
        "checkpoint_timeout=1h",
        "max_connections=60",
        "shared_buffers=256MB",
    )

    def __init__(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="orders-limit-"))
        self.data = self.directory / "data"
        self.port = _free_port()
        self._as_root = os.geteuid() == 0

    def _run(self, *argv: str) -> None:
        command = ["runuser", "-u", "postgres", "--", *argv] if self._as_root else list(argv)
        # PostgreSQL's own programs, with arguments this module makes.
        subprocess.run(command, check=True, capture_output=True, timeout=300)  # noqa: S603

    def start(self) -> Cluster:
        if self._as_root:
            shutil.chown(self.directory, "postgres", "postgres")
        self._run(_postgres_bin("initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres")
        options = " ".join(
            [f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1"]
            + [f"-c {setting}" for setting in self.SETTINGS]
        )
        self._run(
            *(_postgres_bin("pg_ctl"), "-D", str(self.data), "-o", options),
            *("-l", str(self.directory / "postgres.log"), "-w", "start"),
        )
        return self

    def url(self, database: str) -> str:
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/{database}"

    def admin(self) -> Any:
        connection = psycopg2.connect(
            host="127.0.0.1", port=self.port, user="postgres", dbname="postgres"
        )
        connection.autocommit = True
        return connection

    def cpu_seconds(self) -> float:
        """User and system CPU of every process of the cluster so far (those alive)."""
        postmaster = int((self.data / "postmaster.pid").read_text().split()[0])
        total = 0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue  # gone meanwhile
            pid = int(stat.parent.name)
            if pid == postmaster or int(fields[1]) == postmaster:
                total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / TICKS

    def stop(self) -> None:
        if self.data.exists():
            self._run(_postgres_bin("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")
        shutil.rmtree(self.directory, ignore_errors=True)


# -- round trips, counted at the client ---------------------------------------------------


class Counter:
    """A count that many threads add to."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.value = 0

    def add(self) -> None:
        with self._lock:
            self.value += 1


ROUND_TRIPS = Counter()


def _in_transaction(connection: Any) -> bool:
    return bool(connection.status != psycopg2.extensions.STATUS_READY)


class CountingCursor(psycopg2.extensions.cursor):  # type: ignore[misc]
    def execute(self, query: Any, vars: Any = None) -> Any:
        connection = self.connection
        if not connection.autocommit and not _in_transaction(connection):
            ROUND_TRIPS.add()  # psycopg2 sends BEGIN first, a round trip of its own
        ROUND_TRIPS.add()
        return super().execute(query, vars)


class CountingConnection(psycopg2.extensions.connection):  # type: ignore[misc]
    def cursor(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("cursor_factory", CountingCursor)
        return super().cursor(*args, **kwargs)

    def commit(self) -> None:
        if _in_transaction(self):
            ROUND_TRIPS.add()
        super().commit()

    def rollback(self) -> None:
        if _in_transaction(self):
            ROUND_TRIPS.add()
        super().rollback()


# -- the workload -------------------------------------------------------------------------


def order_life(order_id: str) -> list[Command]:
    return [
        CreateOrder(order_id, "customer-1"),
        AddItem(order_id, "apple", 2, Decimal("1.50")),
        AddItem(order_id, "pear", 1, Decimal("2.25")),
        PayOrder(order_id, "card"),
    ]


def single_units(handler: CommandHandler, orders: int) -> list[Callable[[], int]]:
    """One unit per order: its four commands, one ``handle`` each, in turn."""

    def unit(order_id: str) -> Callable[[], int]:
        def run() -> int:
            for command in order_life(order_id):
                outcome = handler.handle(command)
                assert outcome.accepted, outcome
            return 4

        return run

    return [unit(f"l-{uuid.uuid4().hex}") for _ in range(orders)]


def batch_units(handler: CommandHandler, orders: int) -> list[Callable[[], int]]:
    """One unit per ``BATCH`` orders: four ``handle_many`` calls of ``BATCH`` commands,
    each the same step of every order's life (as a worker's batch holds consecutive
    messages, of many orders)."""

    def unit(order_ids: Sequence[str]) -> Callable[[], int]:
        def run() -> int:
            for step in range(4):
                outcomes = handler.handle_many([order_life(o)[step] for o in order_ids])
                assert all(outcome.accepted for outcome in outcomes), outcomes
            return 4 * len(order_ids)

        return run

    groups = max(1, orders // BATCH)
    return [unit([f"b-{uuid.uuid4().hex}" for _ in range(BATCH)]) for _ in range(groups)]


def run_threads(units: Sequence[Callable[[], int]], threads: int) -> tuple[int, float]:
    """Every unit, ``threads`` at a time; (commands done, seconds)."""
    shares = [list(units[index::threads]) for index in range(threads)]
    done = [0] * threads
    errors: list[BaseException] = []
    barrier = threading.Barrier(threads + 1)

    def work(index: int) -> None:
        barrier.wait()
        try:
            for unit in shares[index]:
                done[index] += unit()
        except BaseException as error:  # surfaced below, not lost in a thread
            errors.append(error)

    pool = [threading.Thread(target=work, args=(index,)) for index in range(threads)]
    for thread in pool:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in pool:
        thread.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise errors[0]
    return sum(done), elapsed


# -- one measured run ---------------------------------------------------------------------


@dataclass(frozen=True)
class Figures:
    mode: str
    synchronous_commit: str
    threads: int
    commands: int
    commands_per_s: float
    commits_per_s: float
    wal_bytes_per_command: float
    full_page_images_per_command: float
    commits_per_wal_flush: float
    statements_per_command: float
    round_trips_per_command: float
    server_cpu_us_per_command: float
    executor_us_per_command: float
    client_cpu_us_per_command: float

    @property
    def per_core(self) -> float:
        """Commands/s one core of the server sustains, on this CPU."""
        return 1e6 / self.server_cpu_us_per_command


_COUNTERS = "SELECT pg_current_wal_lsn()::text, wal_fpi, wal_sync FROM pg_stat_wal"

# Commits of transactions that wrote: their COMMIT records in the WAL (pg_walinspect).
# Neither read-only transactions, which pg_stat_database counts too, nor a batch's
# savepoints, which take transaction ids of their own.
_COMMITS = """
    SELECT coalesce(sum(count), 0)::bigint FROM pg_get_wal_stats(%s::pg_lsn, %s::pg_lsn, true)
     WHERE "resource_manager/record_type" = 'Transaction/COMMIT'
"""
_STATEMENTS = """
    SELECT coalesce(sum(calls), 0), coalesce(sum(total_exec_time), 0)
      FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = %s
"""


def measure(
    cluster: Cluster, mode: str, synchronous_commit: str, threads: int, orders: int
) -> Figures:
    admin = cluster.admin()
    cursor = admin.cursor()
    cursor.execute(f"ALTER SYSTEM SET synchronous_commit = '{synchronous_commit}'")
    cursor.execute("SELECT pg_reload_conf()")
    engine = _engine(cluster, threads)
    try:
        handler = CommandHandler(open_event_store(engine), snapshot_every=0)
        if mode == UNPREPARED:
            without_prepared_statements(engine)
        make = batch_units if mode == "batch" else single_units
        run_threads(make(handler, 4 * threads), threads)  # connections and plans warm
        units = make(handler, orders)
        cursor.execute("CHECKPOINT")  # every run starts with the same full-page writes due
        cursor.execute("SELECT pg_stat_statements_reset()")
        cursor.execute(_COUNTERS)
        lsn, fpi, syncs = cursor.fetchone()
        cpu, client, trips = cluster.cpu_seconds(), time.process_time(), ROUND_TRIPS.value
        done, elapsed = run_threads(units, threads)
        cpu = cluster.cpu_seconds() - cpu  # while the backends live: /proc forgets them
        client = time.process_time() - client
        trips = ROUND_TRIPS.value - trips
        # A backend reports its counts at most once a second, and for sure when it
        # ends; the WAL writer within a second or so.
        engine.dispose()
        time.sleep(STATS_DELAY)
        cursor.execute(_COUNTERS)
        lsn_after, fpi_after, syncs_after = cursor.fetchone()
        cursor.execute("SELECT pg_wal_lsn_diff(%s, %s)", (lsn_after, lsn))
        (wal,) = cursor.fetchone()
        cursor.execute(_STATEMENTS, (DATABASE,))
        statements, executor_ms = cursor.fetchone()
        # pg_walinspect reads only flushed WAL, and with synchronous_commit off the end of
        # the run may not be yet: a commit that waits for its flush flushes it.
        cursor.execute("SET synchronous_commit = on")
        cursor.execute("SELECT pg_current_xact_id()")
        cursor.execute(_COMMITS, (lsn, lsn_after))
        (committed,) = cursor.fetchone()
    finally:
        engine.dispose()
        admin.close()
    return Figures(
        mode=mode,
        synchronous_commit=synchronous_commit,
        threads=threads,
        commands=done,
        commands_per_s=done / elapsed,
        commits_per_s=committed / elapsed,
        wal_bytes_per_command=float(wal) / done,
        full_page_images_per_command=(fpi_after - fpi) / done,
        commits_per_wal_flush=committed / max(syncs_after - syncs, 1),
        statements_per_command=float(statements) / done,
        round_trips_per_command=trips / done,
        server_cpu_us_per_command=cpu / done * 1e6,
        executor_us_per_command=float(executor_ms) * 1e3 / done,
        client_cpu_us_per_command=client / done * 1e6,
    )


def _engine(cluster: Cluster, threads: int) -> Engine:
    return build_engine(
        cluster.url(DATABASE),
        pool_size=threads + 2,
        connect_args={"connection_factory": CountingConnection},
    )


@contextmanager
def private_cluster() -> Iterator[Cluster]:
    cluster = Cluster().start()
    try:
        admin = cluster.admin()
        # Its view, read from the admin's database, shows every database's statements.
        admin.cursor().execute("CREATE EXTENSION pg_stat_statements")
        admin.cursor().execute("CREATE EXTENSION pg_walinspect")
        admin.cursor().execute(f'CREATE DATABASE "{DATABASE}"')
        admin.close()
        engine = build_engine(cluster.url(DATABASE))
        migrate(engine)
        engine.dispose()
        yield cluster
    finally:
        cluster.stop()


# -- the command line ---------------------------------------------------------------------

COLUMNS = [
    ("mode", "mode", "{}"),
    ("synchronous_commit", "sync", "{}"),
    ("commands_per_s", "cmd/s", "{:.0f}"),
    ("commits_per_s", "commit/s", "{:.0f}"),
    ("wal_bytes_per_command", "WAL B/cmd", "{:.0f}"),
    ("full_page_images_per_command", "FPI/cmd", "{:.3f}"),
    ("commits_per_wal_flush", "commit/flush", "{:.1f}"),
    ("statements_per_command", "stmt/cmd", "{:.2f}"),
    ("round_trips_per_command", "trips/cmd", "{:.2f}"),
    ("server_cpu_us_per_command", "server us/cmd", "{:.0f}"),
    ("executor_us_per_command", "exec us/cmd", "{:.0f}"),
    ("client_cpu_us_per_command", "client us/cmd", "{:.0f}"),
    ("per_core", "cmd/s/core", "{:.0f}"),
]


def table(figures: Sequence[Figures]) -> str:
    cells = [[label for _, label, _ in COLUMNS]]
    cells += [[form.format(getattr(f, key)) for key, _, form in COLUMNS] for f in figures]
    widths = [max(len(row[i]) for row in cells) for i in range(len(COLUMNS))]
    return "\n".join(
        "  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in cells
    )


def median_figures(runs: Sequence[Figures]) -> Figures:
    """Each figure's median over ``runs`` of one mode and setting."""
    first = runs[0]
    numbers = {
        key: statistics.median(getattr(run, key) for run in runs)
        for key, value in asdict(first).items()
        if isinstance(value, float)
    }
    return replace(first, **numbers)


@click.command()
@click.option("--threads", type=click.IntRange(1, 32), default=4, show_default=True)
@click.option(
    "--orders", type=click.IntRange(BATCH), default=2000, show_default=True, help="Per run."
)
@click.option("--repeats", type=click.IntRange(1), default=3, show_default=True, help="Medians of.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path))
def main(threads: int, orders: int, repeats: int, json_path: Path | None) -> None:
    """What a command costs one PostgreSQL primary, and the commands/s it sustains."""
    click.echo(f"{os.cpu_count()} cpus; {threads} client threads; {orders} orders per run")
    ways = [(mode, sync) for mode in ("single", "batch") for sync in ("on", "off")]
    ways.append((UNPREPARED, "on"))
    runs: dict[tuple[str, str], list[Figures]] = {way: [] for way in ways}
    with private_cluster() as cluster:
        for repeat in range(repeats):  # taking turns: a machine that slows slows them all
            for mode, synchronous_commit in ways:
                runs[mode, synchronous_commit].append(
                    measure(cluster, mode, synchronous_commit, threads, orders)
                )
            click.echo(f"  round {repeat + 1} of {repeats} done")
    figures = [median_figures(runs[way]) for way in ways]
    click.echo(table(figures))
    if json_path is not None:
        rows = [{**asdict(f), "per_core": f.per_core} for f in figures]
        json_path.write_text(json.dumps({"cpus": os.cpu_count(), "runs": rows}, indent=2))


if __name__ == "__main__":
    main()
