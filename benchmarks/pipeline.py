"""The whole pipeline: enqueue to recorded outcome through Redis and prefork workers,
beside a no-op task with the same settings and producer; latency and read-model
freshness at half the measured rate; worker memory after many commands."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, text

from bootstrap import order_history
from commands import CreateOrder
from commands.client import CommandClient
from readmodels.checkpoints import read_state
from readmodels.maintenance import status
from readmodels.projections import PROJECTIONS
from readmodels.runner import ProjectionRunner
from store import open_event_store, open_global_log
from store.engine import build_engine

ROOT = Path(__file__).resolve().parents[1]


@contextmanager
def worker(
    app: str, env: Mapping[str, str], *, queues: str, concurrency: int
) -> Iterator[subprocess.Popen[str]]:
    argv = [
        sys.executable, "-m", "celery", "-A", app, "worker",
        f"--queues={queues}", f"--concurrency={concurrency}", "--pool=prefork",
        "--loglevel=WARNING", "--without-gossip", "--without-mingle", "--without-heartbeat",
        f"--hostname=bench-{uuid.uuid4().hex[:8]}@%h",
    ]  # fmt: skip
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        argv,
        cwd=ROOT,
        env={**os.environ, **env},
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


def _watch(engine: Engine, projected_at: dict[str, float], stop: threading.Event) -> None:
    """Notes when each order's row appears in ``order_summary``, polling every 3 ms.

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
            time.sleep(0.003)


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
