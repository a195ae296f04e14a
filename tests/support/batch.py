"""Batch-mode workers (``orders worker --batch N``) and a way to hold a batch in the pool.

A batch's write of an order's next version waits while another transaction holds an
uncommitted event at that version (the unique index on the stream's versions): a test
that holds one (``held_version``) keeps the batch that writes there in its pool process
for as long as it likes, so that the messages that arrive meanwhile are buffered in the
worker's main process, and make the next batch together. Rolled back, the held event
leaves no trace, and the batch's write goes through.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import redis
from sqlalchemy import Engine, text

from commands.transport import COMMANDS_QUEUE, HANDLE_COMMAND
from store.schema import events
from tests.support.broker import unacked_tasks
from tests.support.store import raw_event_row
from tests.support.worker_logs import received_at
from tests.support.workers import WorkerProcess


def start_batch_worker(
    start_worker: Callable[..., WorkerProcess], batch: int, **options: Any
) -> WorkerProcess:
    """``orders worker ... --batch N``."""
    return start_worker(via="orders", extra_args=(f"--batch={batch}",), **options)


def batch_sizes(worker: WorkerProcess) -> list[int]:
    """The size of each batch the worker logged as done, in order."""
    sizes = []
    for line in list(worker.lines):
        if "batch of " in line and " answered" in line:
            sizes.append(int(line.split("batch of ", 1)[1].split(":", 1)[0]))
    return sizes


class HeldVersion:
    """An uncommitted event at ``version`` of ``order_id``, until ``release``."""

    def __init__(self, engine: Engine, order_id: str, version: int) -> None:
        self._conn = engine.connect()
        self._transaction = self._conn.begin()
        row = raw_event_row(order_id, version, "ItemAdded", {"held": "by the test"})
        self._conn.execute(events.insert().values(row))
        self.released = False

    def release(self) -> None:
        """Roll it back: the writes waiting on it go through."""
        if not self.released:
            self.released = True
            self._transaction.rollback()
            self._conn.close()


@contextmanager
def held_version(engine: Engine, order_id: str, version: int) -> Iterator[HeldVersion]:
    held = HeldVersion(engine, order_id, version)
    try:
        yield held
    finally:
        held.release()


def lock_waits(engine: Engine) -> list[float]:
    """For each session of this database waiting on a lock, the seconds its statement
    has run."""
    query = text(
        "SELECT extract(epoch FROM clock_timestamp() - query_start) FROM pg_stat_activity"
        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    with engine.connect() as conn:
        return [float(seconds) for (seconds,) in conn.execute(query)]


def wait_for_a_lock_wait(engine: Engine, longer_than: float = 0.0, timeout: float = 60.0) -> None:
    """Until a session (a batch's write) has waited on a held version ``longer_than``
    seconds."""
    deadline = time.monotonic() + timeout
    while not any(seconds >= longer_than for seconds in lock_waits(engine)):
        if time.monotonic() > deadline:
            raise AssertionError(f"no write waited on a held version within {timeout} s")
        time.sleep(0.05)


def wait_received(worker: WorkerProcess, task_ids: set[str], timeout: float = 60.0) -> None:
    """Until the worker has logged every one of ``task_ids`` as received."""
    deadline = time.monotonic() + timeout
    while not task_ids <= set(received_at(worker.lines)):
        if time.monotonic() > deadline:
            missing = task_ids - set(received_at(worker.lines))
            raise AssertionError(f"{len(missing)} messages never reached the worker")
        time.sleep(0.05)


def wait_for_log(worker: WorkerProcess, text: str, timeout: float = 60.0) -> None:
    """Until a line of the worker's log holds ``text``."""
    deadline = time.monotonic() + timeout
    while not any(text in line for line in list(worker.lines)):
        if time.monotonic() > deadline:
            raise AssertionError(f"the worker never logged {text!r}:\n{worker.log()}")
        time.sleep(0.05)


def wait_for_nothing_unacknowledged(broker: redis.Redis, timeout: float = 30.0) -> None:
    """Until Redis holds no command message unacknowledged (acknowledgement follows the
    outcome by a moment). Projection wake-ups may stay: they look again on their own."""
    deadline = time.monotonic() + timeout
    while held_commands(broker):
        if time.monotonic() > deadline:
            raise AssertionError(f"still unacknowledged: {sorted(held_commands(broker))}")
        time.sleep(0.1)


def held_commands(broker: redis.Redis) -> set[str]:
    """Task ids of the command messages Redis holds unacknowledged."""
    return {task_id for task_id, name in unacked_tasks(broker).items() if name == HANDLE_COMMAND}


def queued_commands(broker: redis.Redis) -> set[str]:
    """Task ids of the command messages on the commands queue."""
    return {str(json.loads(raw)["headers"]["id"]) for raw in broker.lrange(COMMANDS_QUEUE, 0, -1)}
