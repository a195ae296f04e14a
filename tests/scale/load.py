"""The producer's side: a stream of commands that race on the same orders, a feeder
that keeps the workers' queue full, and what the database says was done and when."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal

import redis
from sqlalchemy import Engine, func, select

from commands import AddItem, Command, CreateOrder
from commands.client import CommandClient, Receipt
from commands.transport import COMMANDS_QUEUE
from store.schema import command_log
from store.schema import dead_letters as dead_letter_table
from tests.support.burst import send_all

HOT_ORDERS = 40  # the most recent orders take the items: commands race on each one


def commands(seed: int) -> Iterator[Command]:
    """Endless: every fifth command opens an order, the others add an item to one of the
    most recent orders, so that several hosts decide for the same order at once."""
    rng = random.Random(seed)
    opened = 0
    for index in range(1_000_000_000):
        if index % 5 == 0 or opened == 0:
            yield CreateOrder(f"order-{seed}-{opened}", f"customer-{opened % 37}")
            opened += 1
        else:
            order = rng.randrange(max(0, opened - HOT_ORDERS), opened)
            yield AddItem(f"order-{seed}-{order}", f"item-{index}", 1 + index % 3, Decimal("2.50"))


def burst(seed: int, count: int) -> list[Command]:
    stream = commands(seed)
    return [next(stream) for _ in range(count)]


class Feeder:
    """Sends commands from ``stream`` whenever fewer than ``backlog`` wait on the
    commands queue, until ``stop``: every worker always has work, whatever its speed."""

    def __init__(
        self, client: CommandClient, broker: redis.Redis, stream: Iterator[Command], backlog: int
    ) -> None:
        self.client = client
        self.broker = broker
        self.stream = stream
        self.backlog = backlog
        self.sent: list[Command] = []
        self.receipts: list[Receipt] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Feeder:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                waiting = int(self.broker.llen(COMMANDS_QUEUE))
            except redis.RedisError:
                waiting = self.backlog
            wanted = [next(self.stream) for _ in range(max(0, self.backlog - waiting))]
            self.receipts += send_all(self.client, wanted, timeout=120)
            self.sent += wanted
            self._stop.wait(0.2)

    def stop(self) -> list[Command]:
        self._stop.set()
        self._thread.join(timeout=180)
        return self.sent


def logged(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(command_log)).scalar_one())


def wait_logged(engine: Engine, count: int, timeout: float) -> float:
    """Until the command log holds ``count`` commands; polls the database twice a
    second rather than every outcome, so that waiting takes no worker's CPU. Returns the
    seconds it took."""
    started = time.monotonic()
    while (seen := logged(engine)) < count:
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{seen} of {count} commands decided after {timeout} s")
        time.sleep(0.5)
    return time.monotonic() - started


@dataclass(frozen=True)
class Span:
    """When the command log recorded its first and last command (the workers' clocks,
    which are this machine's): the rate the workers decided at, whatever the producer."""

    commands: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.commands / self.seconds if self.seconds > 0 else 0.0


def dead_letters(engine: Engine) -> dict[str, int]:
    """The dead letters recorded, counted by the start of their reason."""
    with engine.connect() as conn:
        reasons = conn.execute(select(dead_letter_table.c.reason)).scalars()
        return dict(Counter(reason[:60] for reason in reasons))


def logged_ids(engine: Engine, ids: Iterable[str]) -> set[str]:
    """Those of ``ids`` the command log holds: decided."""
    with engine.connect() as conn:
        column = command_log.c.command_id
        return set(conn.execute(select(column).where(column.in_(list(ids)))).scalars())


def decided_after(engine: Engine, ids: Iterable[str], moment: float) -> list[float]:
    """Seconds after ``moment`` (epoch) at which the command log recorded each of ``ids``."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(command_log.c.recorded_at).where(command_log.c.command_id.in_(list(ids)))
        ).scalars()
        return sorted(round(recorded.timestamp() - moment, 1) for recorded in rows)


def decided_span(engine: Engine) -> Span:
    with engine.connect() as conn:
        first, last, count = conn.execute(
            select(
                func.min(command_log.c.recorded_at),
                func.max(command_log.c.recorded_at),
                func.count(),
            )
        ).one()
    return Span(int(count), (last - first).total_seconds() if count else 0.0)
