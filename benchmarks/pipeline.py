"""The whole pipeline: enqueue to recorded outcome through Redis and prefork workers,
beside a no-op task with the same settings and producer; latency and read-model
freshness at half the measured rate; worker memory after many commands."""

from __future__ import annotations

import os
import queue
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

from sqlalchemy import Engine, select

from commands import CreateOrder
from commands.client import CommandClient
from readmodels.maintenance import status
from readmodels.projections import PROJECTIONS
from readmodels.runner import ProjectionRunner
from readmodels.tables import order_summary
from store.engine import build_engine
from store.event_store import SqlEventStore
from store.global_log import GlobalLogReader
from workers.bootstrap import order_history

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
    seen_at: dict[str, float] = {}
    sent: queue.SimpleQueue[CreateOrder] = queue.SimpleQueue()
    stop = threading.Event()
    watcher = None
    if url is not None:
        engine = build_engine(url)
        watcher = threading.Thread(target=_watch, args=(engine, sent, seen_at, stop))
        watcher.start()
    interval = 1 / per_second
    start = time.perf_counter()
    for index, command in enumerate(commands):
        delay = start + index * interval - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        sent_at[command.command_id] = time.time()
        client.send(command)
        sent.put(command)
    done_at = {}
    for command in commands:
        client.wait(command.command_id, timeout=300)
        done_at[command.command_id] = _date_done(client, command.command_id)
    if watcher is not None:
        deadline = time.monotonic() + 30
        while len(seen_at) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        stop.set()
        watcher.join()
        engine.dispose()
    latencies = [(done_at[i] - sent_at[i]) * 1000 for i in sent_at]
    freshness = [(seen_at[i] - done_at[i]) * 1000 for i in seen_at if i in done_at]
    return Paced(latencies, freshness)


def _date_done(client: CommandClient, command_id: str) -> float:
    done = client.completed_at(command_id)
    assert done is not None, command_id
    return done.timestamp()


def _watch(
    engine: Engine,
    sent: queue.SimpleQueue[CreateOrder],
    seen_at: dict[str, float],
    stop: threading.Event,
) -> None:
    """Polls the read model every few milliseconds and notes when each order appears.

    It asks for every order sent and not seen yet, and only those: checking only some
    would report the others late, and asking for unsent ones (thousands, at first)
    cost PostgreSQL a core on a large table; either way the figure would measure the
    watcher, not the system.
    """
    pending: dict[str, str] = {}  # order id -> command id
    with engine.connect() as conn:
        while not stop.is_set():
            while not sent.empty():
                command = sent.get()
                pending[command.order_id] = command.command_id
            if pending:
                query = select(order_summary.c.order_id).where(
                    order_summary.c.order_id.in_(list(pending))
                )
                found = conn.execute(query).scalars().all()
                conn.rollback()
                now = time.time()
                for order_id in found:
                    seen_at[pending.pop(order_id)] = now
            time.sleep(0.003)


def wait_caught_up(url: str, timeout: float = 300) -> None:
    """Until every projection has read the whole log (the sweep runs it, not a wake-up)."""
    engine = build_engine(url)
    reader = GlobalLogReader(engine)
    runner = ProjectionRunner(engine, reader, order_history(SqlEventStore(engine)))
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
