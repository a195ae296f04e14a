"""A fault outside the command's handling is not the message's fault: never a dead letter.

Celery reports an error raised outside the task's body (storing the outcome in the
result store, say) as an internal error, the path that also carries messages Celery
refuses to run. A real worker, its result store a Redis of its own that stops answering
while a command is being decided: the command must be decided once, its outcome reach the
producer when the store is back, and the dead letters stay empty.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from sqlalchemy import Engine, func, select, text

from commands import CreateOrder
from commands.client import CommandClient
from store.schema import command_log, dead_letters, events
from tests.support.servers import RedisServer
from tests.support.workers import WorkerProcess

WAIT = 60.0  # generous: two cores shared with other test runs


def _wait_for(condition: Callable[[], bool], what: str, worker: WorkerProcess) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {WAIT:g} s:\n{worker.log()}")
        time.sleep(0.1)


def _count(pg: Engine, query: object) -> int:
    with pg.connect() as conn:
        return int(conn.execute(query).scalar_one())  # type: ignore[call-overload]


@pytest.fixture
def results_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "results").start()
    yield server
    server.stop()


def test_a_result_store_timeout_while_storing_an_outcome_is_no_dead_letter(
    start_worker: Callable[..., WorkerProcess],
    results_redis: RedisServer,
    redis_url: str,
    broker: redis.Redis,
    pg: Engine,
) -> None:
    # A short publish timeout bounds each result-store call (ORDERS_PUBLISH_TIMEOUT / 4 a
    # try), so the frozen store makes storing the outcome fail within seconds.
    worker = start_worker(
        env={"ORDERS_RESULT_BACKEND": results_redis.url, "ORDERS_PUBLISH_TIMEOUT": "2"},
        concurrency=1,
    )
    client = CommandClient(redis_url, results_redis.url, publish_timeout=5)
    command = CreateOrder("order-store-timeout", "customer-1")
    holder = pg.connect()
    try:
        # The command waits on this lock inside its handling, so the result store can be
        # frozen at the moment the worker is about to store the outcome, not before.
        lock = holder.begin()
        holder.execute(text("LOCK TABLE command_log IN ACCESS EXCLUSIVE MODE"))
        receipt = client.send(command)
        _wait_for(lambda: command.command_id in worker.log(None), "delivery", worker)
        results_redis.freeze()
        lock.rollback()
        _wait_for(
            lambda: "Exception raised outside body" in worker.log(None),
            "error outside the task",
            worker,
        )
    finally:
        holder.close()
        results_redis.thaw()

    outcome = receipt.wait(timeout=WAIT, resend_every=2.0)
    client.close()

    assert outcome.accepted, outcome
    assert _count(pg, select(func.count()).select_from(dead_letters)) == 0, worker.log()
    decided = select(func.count()).where(command_log.c.command_id == command.command_id)
    assert _count(pg, decided) == 1
    written = select(func.count()).where(
        events.c.metadata["command_id"].as_string() == command.command_id
    )
    assert _count(pg, written) == 1  # OrderCreated, once: the resend was answered, not decided
