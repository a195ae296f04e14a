"""The whole pipeline: enqueue to recorded outcome through Redis and prefork workers,
beside a no-op task with the same settings and producer; the same with the read models
live (to the last command's events in every read model), with their freshness at full
load and the projections' CPU per event; latency and read-model freshness at half the
measured rate; worker memory after many commands. Each with the default worker or one in
batch mode (``options``)."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection, Engine, select, text

from benchmarks.isolation import child_environment
from bootstrap import order_history
from commands import CreateOrder
from commands.client import CommandClient
from readmodels.checkpoints import read_state
from readmodels.maintenance import status
from readmodels.projections import PROJECTIONS
from readmodels.runner import ProjectionRunner
from readmodels.tables import projection_checkpoints
from store import open_event_store, open_global_log
from store.engine import build_engine
from store.log import Checkpoint

ROOT = Path(__file__).resolve().parents[1]


@contextmanager
def worker(
    app: str,
    env: Mapping[str, str],
    *,
    queues: str,
    concurrency: int,
    options: Sequence[str] = (),
) -> Iterator[subprocess.Popen[str]]:
    """A ``celery worker`` of ``app``; ``options`` are more of its command line, such as
    ``--batch=20`` (batch mode, ``workers/batch/``)."""
    argv = [
        sys.executable, "-m", "celery", "-A", app, "worker",
        f"--queues={queues}", f"--concurrency={concurrency}", "--pool=prefork",
        "--loglevel=WARNING", "--without-gossip", "--without-mingle", "--without-heartbeat",
        f"--hostname=bench-{uuid.uuid4().hex[:8]}@%h", *options,
    ]  # fmt: skip
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        argv,
        cwd=ROOT,
        env=child_environment(env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
        preexec_fn=_die_with_parent,
    )
    try:
        yield process
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _die_with_parent() -> None:
    """A worker of a bench that is killed must not live on, taking whatever reaches its
    queues next (SIGTERM from the kernel when the bench process dies; Linux)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG


@contextmanager
def warm_worker(
    client: CommandClient, app: str, env: Mapping[str, str], *, concurrency: int
) -> Iterator[subprocess.Popen[str]]:
    """A worker on the commands queue that has answered, every pool process warmed up."""
    with worker(app, env, queues="orders.commands", concurrency=concurrency) as process:
        wait_ready(client)
        throughput(client, 100)
        yield process


def wait_ready(client: CommandClient, timeout: float = 60) -> None:
    """Until a worker answers a command (cheaper than parsing its log)."""
    receipt = client.send(CreateOrder(f"ready-{uuid.uuid4()}", "bench"))
    receipt.wait(timeout=timeout)


def throughput(client: CommandClient, count: int) -> float:
    """Commands per second from the first send to the last outcome."""
    commands = [CreateOrder(f"t-{uuid.uuid4()}", "bench") for _ in range(count)]
    started = time.perf_counter()
    receipts = [client.send(command) for command in commands]
    for receipt in receipts:
        outcome = receipt.wait(timeout=300)
        assert outcome.accepted, outcome
    return count / (time.perf_counter() - started)


@dataclass
class Paced:
    latencies_ms: list[float]
    freshness_ms: list[float]


def paced(client: CommandClient, url: str | None, per_second: float, seconds: float) -> Paced:
    """Send at a steady ``per_second``; latency from send to outcome and, with ``url``,
    freshness from outcome to the order's row in the read model."""
    count = max(10, int(per_second * seconds))
    commands = [CreateOrder(f"p-{uuid.uuid4()}", "bench") for _ in range(count)]
    sent_at: dict[str, float] = {}
    projected_at: dict[str, float] = {}  # order id -> when its row appeared
    stop = threading.Event()
    watcher = None
    if url is not None:
        engine = build_engine(url)
        watcher = threading.Thread(target=_watch, args=(engine, projected_at, stop))
        watcher.start()
    interval = 1 / per_second
    start = time.perf_counter()
    for index, command in enumerate(commands):
        delay = start + index * interval - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        sent_at[command.command_id] = time.time()
        client.send(command)
    done_at = {}
    for command in commands:
        client.wait(command.command_id, timeout=300)
        done_at[command.command_id] = _date_done(client, command.command_id)
    if watcher is not None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not all(
            command.order_id in projected_at for command in commands
        ):
            time.sleep(0.05)
        stop.set()
        watcher.join()
        engine.dispose()
    latencies = [(done_at[i] - sent_at[i]) * 1000 for i in sent_at]
    freshness = [
        (projected_at[command.order_id] - done_at[command.command_id]) * 1000
        for command in commands
        if command.order_id in projected_at
    ]
    return Paced(latencies, freshness)


def _date_done(client: CommandClient, command_id: str) -> float:
    done = client.completed_at(command_id)
    assert done is not None, command_id
    return done.timestamp()


_PASSED = text(
    """
    SELECT aggregate_id FROM events
    WHERE (transaction_id, position) > (CAST(:after_txid AS xid8), :after_position)
      AND (transaction_id, position) <= (CAST(:upto_txid AS xid8), :upto_position)
    """
)


def _watch(
    engine: Engine, projected_at: dict[str, float], stop: threading.Event, every: float = 0.003
) -> None:
    """Notes when each order's row appears in ``order_summary``, polling (every 3 ms).

    The projection moves its checkpoint in the transaction that writes the rows, so a
    poll reads that one row and, when it moved, the events it passed. Its cost follows
    the events projected, not the orders waiting: asking for the pending orders by id
    grew with the latency, and once commands queued up, the watcher fed the queue.
    """
    with engine.connect() as conn:
        passed = read_state(conn, "order_summary").checkpoint
        while not stop.is_set():
            checkpoint = read_state(conn, "order_summary").checkpoint
            if checkpoint != passed:
                now = time.time()
                bounds = {
                    "after_txid": str(passed.transaction_id),
                    "after_position": passed.position,
                    "upto_txid": str(checkpoint.transaction_id),
                    "upto_position": checkpoint.position,
                }
                for order_id in conn.execute(_PASSED, bounds).scalars():
                    projected_at.setdefault(order_id, now)
                passed = checkpoint
            conn.rollback()
            time.sleep(every)


def wait_caught_up(url: str, timeout: float = 300) -> None:
    """Until every projection has read the whole log (the sweep runs it, not a wake-up)."""
    engine = build_engine(url)
    reader = open_global_log(engine)
    runner = ProjectionRunner(engine, reader, order_history(open_event_store(engine)))
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            runner.run_all()
            report = status(engine, reader, PROJECTIONS.values())
            if all(entry.lag_events == 0 for entry in report):
                return
            time.sleep(0.2)
        raise TimeoutError("the read models did not catch up before the freshness run")
    finally:
        engine.dispose()


@dataclass
class Live:
    """A throughput run with the read models live: commands per second from the first
    send until the last command's events are in every read model."""

    cps: float
    freshness_ms: list[float]  # each command's outcome to its order's row, at full load
    events: int  # events the run appended (and the projections applied)
    cpu_seconds: float  # of the processes watched, from the first send to caught up


FULL_LOAD_POLL = 0.025
"""Seconds between the freshness watcher's looks during a live throughput run: each look
costs the producer's process (on the measured cores) a round trip or two, about 0.3 ms
of CPU a command at 10 ms, which the no-op task it is compared with does not pay. 25 ms
is a fortieth of the 1,000 ms target, and can only make freshness look worse."""


def live_throughput(
    client: CommandClient,
    url: str,
    count: int,
    cpu_of: subprocess.Popen[str] | None = None,
) -> Live:
    """Send ``count`` commands as fast as the producer can; the clock stops when every
    projection's checkpoint is at or past the last event the commands appended. Start
    from caught-up read models (``prepare_live``)."""
    commands = [CreateOrder(f"l-{uuid.uuid4()}", "bench") for _ in range(count)]
    engine = build_engine(url)
    reader = open_global_log(engine)
    projected_at: dict[str, float] = {}
    stop = threading.Event()
    try:
        with engine.connect() as conn:
            before = reader.head(conn)
        # Polled every FULL_LOAD_POLL, not 3 ms: at full load the producer's process
        # shares the two cores with the system, and each poll costs it a round trip.
        watcher = threading.Thread(target=_watch, args=(engine, projected_at, stop, FULL_LOAD_POLL))
        watcher.start()
        cpu_before = cpu_seconds(cpu_of.pid) if cpu_of else 0.0
        started = time.perf_counter()
        try:
            receipts = [client.send(command) for command in commands]
            for receipt in receipts:
                outcome = receipt.wait(timeout=300)
                assert outcome.accepted, outcome
            with engine.connect() as conn:
                head = reader.head(conn)
            wait_projected(engine, head, every=FULL_LOAD_POLL / 5)
            elapsed = time.perf_counter() - started
            cpu = cpu_seconds(cpu_of.pid) - cpu_before if cpu_of else 0.0
            deadline = time.monotonic() + 10  # the watcher's last look
            while time.monotonic() < deadline and not all(
                command.order_id in projected_at for command in commands
            ):
                time.sleep(0.01)
        finally:
            stop.set()
            watcher.join()
        with engine.connect() as conn:
            events = _events_between(conn, before, head)
    finally:
        engine.dispose()
    done_at = {command.command_id: _date_done(client, command.command_id) for command in commands}
    freshness = [
        (projected_at[command.order_id] - done_at[command.command_id]) * 1000
        for command in commands
        if command.order_id in projected_at
    ]
    return Live(count / elapsed, freshness, events, cpu)


def prepare_live(client: CommandClient, url: str) -> None:
    """Workers answering and warmed up, the read models caught up with the whole log
    (the commands-only runs before left their events unprojected)."""
    wait_ready(client)
    throughput(client, 100)
    wait_caught_up(url)


def wait_projected(
    engine: Engine, head: Checkpoint, *, every: float = 0.002, timeout: float = 300
) -> None:
    """Until every projection's checkpoint is at or past ``head``."""
    names = set(PROJECTIONS)
    query = select(
        projection_checkpoints.c.name,
        projection_checkpoints.c.transaction_id,
        projection_checkpoints.c.position,
    )
    deadline = time.monotonic() + timeout
    with engine.connect() as conn:
        while True:
            rows = conn.execute(query).all()
            conn.rollback()
            done = {row.name for row in rows if Checkpoint(*row[1:]) >= head}
            if names <= done:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"read models not caught up: {sorted(names - done)}")
            time.sleep(every)


_BETWEEN = text(
    """
    SELECT count(*) FROM events
    WHERE (transaction_id, position) > (CAST(:after_txid AS xid8), :after_position)
      AND (transaction_id, position) <= (CAST(:upto_txid AS xid8), :upto_position)
    """
)


def _events_between(conn: Connection, after: Checkpoint, upto: Checkpoint) -> int:
    bounds = {
        "after_txid": str(after.transaction_id),
        "after_position": after.position,
        "upto_txid": str(upto.transaction_id),
        "upto_position": upto.position,
    }
    return int(conn.execute(_BETWEEN, bounds).scalar_one())


_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User and system CPU of a worker and its pool processes (and of pool processes
    that have exited and been reaped), from /proc."""
    total = 0.0
    for index, each in enumerate([pid, *_children(pid)]):
        try:
            stat = Path(f"/proc/{each}/stat").read_text()
        except FileNotFoundError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        # utime, stime, cutime, cstime: fields 14-17 of proc(5), 11-14 after the name.
        used = int(fields[11]) + int(fields[12])
        if index == 0:
            used += int(fields[13]) + int(fields[14])
        total += used / _TICKS
    return total


def rss_mb(process: subprocess.Popen[str]) -> float:
    """Memory of a worker and its pool children, in MB: the sum of their proportional
    set sizes, so pages the children share with their parent are counted once."""
    total_kb = 0
    for pid in [process.pid, *_children(process.pid)]:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total_kb += int(line.split()[1])
        except FileNotFoundError:
            continue
    return total_kb / 1024


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children = (task / "children").read_text().split()
        found += [int(child) for child in children]
    return found
