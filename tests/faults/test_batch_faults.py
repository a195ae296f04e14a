"""Batch mode (``orders worker --batch N``, workers/batch/) under the faults the default
mode's tests put it through, on real Redis, PostgreSQL and worker processes:

- a batch past its soft time limit: tried again command by command, none failed for
  being in a slow batch;
- a bug in the batch path (here: stored data the batch cannot read): each command
  decided alone by the default path, only the one on the broken order failed;
- one pool process killed mid-batch, before or after its commit: the batch requeued,
  each command applied once, the outcomes the command log's;
- a warm shutdown (SIGTERM) with a batch in the pool and more buffered: none lost, none
  applied twice, none left waiting for the visibility timeout;
- the result backend away for a moment as a batch stores its outcomes: stored once back;
- Redis (broker and backend) restarted in a burst: one outcome per command;
- the database away past the retries: each command of the batch recorded failed once
  it is back, never decided behind its producer's back;
- poison messages in a batch with good ones: dead-lettered or rejected, the good ones
  accepted, the worker serving.

Most tests hold a batch in its pool process with an uncommitted event on the order it
writes (``tests.support.batch``), so that what arrives meanwhile is buffered and makes
the next batch, whole: the batches are then known, not left to timing.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest
import redis
from celery import Celery
from sqlalchemy import Engine, select
from sqlalchemy.engine import make_url

from commands import AddItem, Command, CreateOrder, Outcome
from commands.client import CommandClient
from commands.envelope import encode
from commands.transport import COMMANDS_QUEUE, HANDLE_COMMAND
from store.schema import command_log, dead_letters, events
from tests.support.batch import (
    batch_sizes,
    held_commands,
    held_version,
    queued_commands,
    start_batch_worker,
    wait_for_a_lock_wait,
    wait_for_log,
    wait_for_nothing_unacknowledged,
    wait_received,
)
from tests.support.broker import publish_raw, send_raw, task_headers
from tests.support.burst import (
    CountingClient,
    Producer,
    assert_outcomes_match_the_log,
    burst_of_commands,
    restart_after,
    send_all,
    wait_all,
)
from tests.support.ids import new_id
from tests.support.proc import children
from tests.support.proxy import TcpProxy
from tests.support.servers import RedisServer
from tests.support.store import raw_event_row
from tests.support.workers import WorkerProcess
from workers.batch.pool import Item, _store_outcomes

BATCH = 20
PRICE = Decimal("1.50")
WAIT = 120.0
SLOW_ENV = {
    # Soft limit 4 s, hard limit 14 s (workers/batch/limits.py): a batch held 7 s is
    # past the first and far from the second.
    "ORDERS_COMMAND_TIME_LIMIT": "14",
    "ORDERS_VISIBILITY_TIMEOUT": "30",
    "ORDERS_TASK_TIME_LIMIT": "20",
}
PAST_THE_SOFT_LIMIT = 7.0


def create(client: CommandClient, order_ids: list[str]) -> tuple[list[Command], dict[str, Outcome]]:
    """The orders created, and their outcomes."""
    creates: list[Command] = [CreateOrder(order_id, "customer-1") for order_id in order_ids]
    outcomes = wait_all(send_all(client, creates, 30), timeout=WAIT, resend_every=None)
    assert {(o.status, o.version) for o in outcomes.values()} == {("accepted", 1)}
    return creates, outcomes


def accepted(n: int) -> Outcome:
    order_id = f"order-{n}"
    return Outcome("accepted", new_id(), order_id, version=1, events=("OrderCreated",))


def add(order_id: str, item: str = "apple") -> AddItem:
    return AddItem(order_id, item, 1, PRICE)


def test_a_batch_past_its_soft_time_limit_decides_each_command_alone_and_fails_none(
    start_worker: Callable[..., WorkerProcess], client: CommandClient, pg: Engine
) -> None:
    """In the default mode a command past its soft limit is recorded failed; in a batch
    the limit is the batch's, and the commands that were only waiting on a slow one must
    not fail with it. The batch is rolled back and each command tried again alone."""
    worker = start_batch_worker(start_worker, BATCH, env=SLOW_ENV, concurrency=1, name="slow")
    fast = [f"fast-{n}" for n in range(10)]
    setup, created = create(client, ["gate", "slow", *fast])

    with held_version(pg, "gate", 2) as gate, held_version(pg, "slow", 2) as slow:
        # The gate's batch waits in the only pool process; the rest are buffered behind.
        gated = [add("gate")]
        receipts = send_all(client, gated, 30)
        wait_for_a_lock_wait(pg)
        together: list[Command] = [add("slow"), *(add(order_id) for order_id in fast)]
        receipts += send_all(client, together, 30)
        wait_received(worker, {command.command_id for command in together})
        gate.release()
        # The batch of the other eleven now waits on the slow order, past its soft limit.
        wait_for_a_lock_wait(pg, longer_than=PAST_THE_SOFT_LIMIT)
        slow.release()

        outcomes = wait_all(receipts, timeout=WAIT, resend_every=None)

    commands = [*setup, *gated, *together]
    counts = assert_outcomes_match_the_log(pg, commands, {**created, **outcomes})
    assert set(counts) == {"accepted"}, counts
    assert "ran past its soft time limit; each is decided alone" in worker.log(lines=None)
    sizes = batch_sizes(worker)
    # The eleven were one batch, then eleven batches of one.
    assert len(together) in sizes, sizes
    assert sizes[-len(together) :] == [1] * len(together), sizes


def test_a_bug_in_the_batch_path_has_each_command_decided_alone(
    start_worker: Callable[..., WorkerProcess], client: CommandClient, pg: Engine
) -> None:
    """An order whose stored events cannot be read (written around the codec, as a
    buggy writer would) makes the batch's reading raise. The default path then decides
    each command of the batch alone: the one on the broken order is failed, as the
    default mode fails it, and the others are accepted."""
    worker = start_batch_worker(start_worker, BATCH, concurrency=1, name="bug")
    fine = [f"fine-{n}" for n in range(5)]
    setup, created = create(client, ["gate", "broken", *fine])
    with pg.begin() as conn:
        conn.execute(events.insert().values(raw_event_row("broken", 2, "ItemAdded", {})))

    with held_version(pg, "gate", 2) as gate:
        gated = [add("gate")]
        receipts = send_all(client, gated, 30)
        wait_for_a_lock_wait(pg)
        broken = add("broken")
        together: list[Command] = [broken, *(add(order_id) for order_id in fine)]
        receipts += send_all(client, together, 30)
        wait_received(worker, {command.command_id for command in together})
        gate.release()
        outcomes = wait_all(receipts, timeout=WAIT, resend_every=None)

    failed = outcomes.pop(broken.command_id)
    assert failed.status == "failed", failed
    assert client.outcome(broken.command_id) == failed
    counts = assert_outcomes_match_the_log(
        pg, [*setup, *gated, *together[1:]], {**created, **outcomes}
    )
    assert set(counts) == {"accepted"}, counts
    assert "a batch of 6 commands failed; deciding each alone" in worker.log(lines=None)
    assert len(together) in batch_sizes(worker)
    assert worker.process.poll() is None


def test_a_pool_process_killed_mid_batch_has_its_batch_requeued_and_applied_once(
    start_worker: Callable[..., WorkerProcess],
    client: CommandClient,
    broker: redis.Redis,
    pg: Engine,
) -> None:
    """kill -9 of the pool process deciding a batch (not of the worker): the worker
    rejects the batch's messages back onto the queue (task_reject_on_worker_lost), a new
    pool process takes them, and each command is applied once."""
    worker = start_batch_worker(start_worker, BATCH, concurrency=1, name="child")
    others = [f"other-{n}" for n in range(10)]
    setup, created = create(client, ["gate", *others])

    with held_version(pg, "gate", 2) as gate:
        held: list[Command] = [add("gate"), *(add(order_id) for order_id in others)]
        receipts = send_all(client, held, 30)
        wait_for_a_lock_wait(pg)
        [pool_process] = children(worker.process.pid)
        os.kill(pool_process, signal.SIGKILL)
        wait_for_log(worker, "was lost")
        gate.release()
        outcomes = wait_all(receipts, timeout=WAIT, resend_every=None)

    counts = assert_outcomes_match_the_log(pg, [*setup, *held], {**created, **outcomes})
    assert set(counts) == {"accepted"}, counts
    assert worker.process.poll() is None
    wait_for_nothing_unacknowledged(broker)


def test_a_warm_shutdown_with_a_batch_in_the_pool_and_more_buffered_loses_none(
    start_worker: Callable[..., WorkerProcess],
    client: CommandClient,
    broker: redis.Redis,
    pg: Engine,
) -> None:
    """SIGTERM while one batch is being decided and more messages wait in the worker's
    buffer: the batch is finished and acknowledged, the buffered messages go back to the
    queue as the worker closes its channel (kombu restores what it holds unacknowledged),
    and the next worker decides them. None lost, none applied twice."""
    first = start_batch_worker(start_worker, BATCH, concurrency=1, name="term-first")
    others = [f"term-{n}" for n in range(10)]
    setup, created = create(client, ["gate", *others])

    with held_version(pg, "gate", 2) as gate:
        gated = [add("gate")]
        receipts = send_all(client, gated, 30)
        wait_for_a_lock_wait(pg)
        buffered: list[Command] = [add(order_id) for order_id in others]
        receipts += send_all(client, buffered, 30)
        wait_received(first, {command.command_id for command in buffered})
        os.kill(first.process.pid, signal.SIGTERM)  # the main process only, as a supervisor does
        wait_for_log(first, "Warm shutdown")
        gate.release()
        first.process.wait(timeout=60)

    # Not stranded in the unacknowledged hash until the visibility timeout: on the queue.
    assert queued_commands(broker) == {command.command_id for command in buffered}
    assert not held_commands(broker)
    gated_outcome = client.outcome(gated[0].command_id)
    assert gated_outcome is not None and gated_outcome.status == "accepted"
    start_batch_worker(start_worker, BATCH, concurrency=1, name="term-second")
    outcomes = wait_all(receipts, timeout=WAIT, resend_every=None)
    counts = assert_outcomes_match_the_log(pg, [*setup, *gated, *buffered], {**created, **outcomes})
    assert set(counts) == {"accepted"}, counts
    wait_for_nothing_unacknowledged(broker)


def test_poison_in_a_batch_is_recorded_and_the_good_commands_beside_it_accepted(
    start_worker: Callable[..., WorkerProcess],
    client: CommandClient,
    broker: redis.Redis,
    pg: Engine,
    redis_url: str,
) -> None:
    """Messages that are not commands, in one batch with commands: each not-a-command is
    dead-lettered once and its producer answered `rejected`, each command accepted, and
    the worker goes on serving."""
    worker = start_batch_worker(start_worker, BATCH, concurrency=1, name="poison")
    goods = [f"good-{n}" for n in range(5)]
    setup, created = create(client, ["gate", *goods])

    with held_version(pg, "gate", 2) as gate:
        gated = [add("gate")]
        receipts = send_all(client, gated, 30)
        wait_for_a_lock_wait(pg)
        good: list[Command] = [add(order_id) for order_id in goods]
        receipts += send_all(client, good[:2], 30)
        not_an_object = send_raw(client, "AddItem good-0 apple", new_id())
        without_an_id = send_raw(client, {"type": "AddItem", "schema": 1}, new_id())
        two_arguments = new_id()
        client._app.send_task(
            HANDLE_COMMAND,
            args=[encode(add("good-1")), "extra"],
            task_id=two_arguments,
            queue=COMMANDS_QUEUE,
        )
        publish_raw(redis_url, b"{not json", task_headers())  # not even a task
        receipts += send_all(client, good[2:], 30)
        poison = {not_an_object, without_an_id, two_arguments}
        wait_received(worker, {command.command_id for command in good} | poison)
        gate.release()
        outcomes = wait_all(receipts, timeout=WAIT, resend_every=None)

    counts = assert_outcomes_match_the_log(pg, [*setup, *gated, *good], {**created, **outcomes})
    assert set(counts) == {"accepted"}, counts
    for task_id in poison:
        refused = client.wait(task_id, timeout=WAIT)
        assert (refused.status, refused.error) == ("rejected", "InvalidCommand"), refused
    with pg.connect() as conn:
        reasons = sorted(row.reason.split(":")[0] for row in conn.execute(select(dead_letters)))
    assert reasons == [
        "InvalidCommand",
        "InvalidCommand",
        "InvalidCommand",
        "undecodable message (application/json)",
    ]
    assert len(good) + len(poison) in batch_sizes(worker)
    # Still serving, and nothing left to be delivered again.
    after = client.send(CreateOrder("after-the-poison", "customer-2")).wait(timeout=WAIT)
    assert after.status == "accepted"
    assert worker.process.poll() is None
    wait_for_nothing_unacknowledged(broker)
    assert not queued_commands(broker)


def test_a_batchs_outcomes_reach_a_result_backend_that_is_back_after_a_moment(
    tmp_path: Path,
) -> None:
    """A batch's outcomes are written in one pipeline, not through ``store_result``; a
    Redis away for a moment must not lose them, as the backend's retry policy keeps the
    default path's from being lost. (A long policy here, so that the restart's own time
    on a busy machine does not matter.)"""
    server = RedisServer(tmp_path / "backend").start()
    app = Celery("batch-outcomes", broker="memory://", backend=server.url, set_as_current=False)
    app.conf.result_backend_transport_options = {
        "socket_timeout": 2,
        "socket_connect_timeout": 2,
        "retry_policy": {
            "max_retries": 60,
            "interval_start": 0.1,
            "interval_step": 0.2,
            "interval_max": 0.5,
        },
    }
    items = [
        Item(task_id=new_id(), args=(), kwargs={}, retries=0, outcome=accepted(n)) for n in range(5)
    ]
    try:
        assert app.backend.client.ping()  # connected before the outage
        server.kill()
        restart = threading.Timer(1.0, server.start)
        restart.start()
        _store_outcomes(app.backend, items)
        restart.join()
        for item in items:
            assert item.outcome is not None
            assert app.backend.get_task_meta(item.task_id)["result"] == item.outcome.to_dict()
            # Kept as long as Celery keeps any result (result_expires), not for ever.
            ttl = server.client().ttl(app.backend.get_key_for_task(item.task_id))
            assert 0 < ttl <= app.conf.result_expires.total_seconds()
    finally:
        server.stop()


def test_a_pool_process_killed_after_the_commit_has_the_redelivery_answered_from_the_log(
    start_worker: Callable[..., WorkerProcess],
    redis_url: str,
    broker: redis.Redis,
    pg: Engine,
    tmp_path: Path,
) -> None:
    """The batch is committed and its outcomes cannot be stored (the result backend
    frozen); its pool process is killed while it retries them (or, past the backend's
    retry policy, the job gives up). Either way its messages are requeued
    unacknowledged, and the redelivery finds every command in the command log, writes
    nothing, and stores those outcomes."""
    backend = RedisServer(tmp_path / "backend").start()
    client = CommandClient(redis_url, backend.url, publish_timeout=5)
    try:
        worker = start_batch_worker(
            start_worker,
            BATCH,
            env={"ORDERS_RESULT_BACKEND": backend.url},
            concurrency=1,
            name="committed",
        )
        orders = [f"done-{n}" for n in range(8)]
        setup, created = create(client, orders)
        # The next batch's outcomes cannot be stored: its process waits on Redis.
        backend.freeze()
        batch: list[Command] = [add(order_id) for order_id in orders]
        receipts = send_all(client, batch, 30)
        wait_logged(pg, {command.command_id for command in batch})
        [pool_process] = children(worker.process.pid)
        os.kill(pool_process, signal.SIGKILL)
        wait_for_log(worker, "was lost")
        backend.thaw()
        outcomes = wait_all(receipts, timeout=WAIT, resend_every=None)

        counts = assert_outcomes_match_the_log(pg, [*setup, *batch], {**created, **outcomes})
        assert set(counts) == {"accepted"}, counts
        wait_for_nothing_unacknowledged(broker)
    finally:
        client.close()
        backend.stop()


def wait_logged(pg: Engine, command_ids: set[str], timeout: float = WAIT) -> None:
    """Until every one of ``command_ids`` is in the command log (committed)."""
    deadline = time.monotonic() + timeout
    while True:
        with pg.connect() as conn:
            query = select(command_log.c.command_id).where(
                command_log.c.command_id.in_(command_ids)
            )
            logged = {row.command_id for row in conn.execute(query)}
        if logged == command_ids:
            return
        assert time.monotonic() < deadline, f"{len(command_ids - logged)} never committed"
        time.sleep(0.05)


def test_a_batch_past_its_retries_is_recorded_failed_once_the_database_is_back(
    start_worker: Callable[..., WorkerProcess],
    client: CommandClient,
    pg: Engine,
    postgres_url: str,
) -> None:
    """As in the default mode (tests/faults/test_database_down.py): while the database is
    away nothing is answered; past ``ORDERS_DB_RETRIES`` each command of the batch is
    recorded failed once it is back, a resend gets that same answer, and the worker takes
    commands again."""
    database = make_url(postgres_url)
    proxy = TcpProxy((database.host or "127.0.0.1", database.port or 5432))
    try:
        url = database.set(host="127.0.0.1", port=proxy.port)
        worker = start_batch_worker(
            start_worker,
            BATCH,
            env={
                "ORDERS_DATABASE_URL": url.render_as_string(hide_password=False),
                "ORDERS_DB_RETRIES": "3",
                "ORDERS_DB_RETRY_DELAY": "0.2",
            },
            concurrency=1,
            name="retries",
        )
        setup, created = create(client, ["away"])
        with held_version(pg, "away", 2):
            gated = [add("away", "gated")]
            receipts = send_all(client, gated, 30)
            wait_for_a_lock_wait(pg)
            together: list[Command] = [add("away", f"item-{n}") for n in range(6)]
            receipts += send_all(client, together, 30)
            wait_received(worker, {command.command_id for command in together})
            proxy.cut()  # the gated batch's connection too: it is retried, and so are these
            wait_for_log(worker, "database unreachable after 3 retries")
        batch = [*gated, *together]
        assert not wait_all(receipts, timeout=1, resend_every=None), "answered while away"
        proxy.resume()
        outcomes = wait_all(receipts, timeout=WAIT, resend_every=None)

        counts = assert_outcomes_match_the_log(pg, [*setup, *batch], {**created, **outcomes})
        assert counts == {"accepted": 1, "failed": len(batch)}, counts
        for command in batch:
            outcome = outcomes[command.command_id]
            assert outcome.error == "DatabaseUnavailable", outcome
            assert "3 retries" in (outcome.message or ""), outcome
            assert client.send(command).wait(timeout=WAIT) == outcome  # not decided again
        after = client.send(add("away", "after")).wait(timeout=WAIT)
        assert (after.status, after.version) == ("accepted", 2)
        assert len(together) in batch_sizes(worker)
        assert worker.process.poll() is None
    finally:
        proxy.close()


@pytest.mark.timeout(600)
def test_a_redis_restart_in_a_burst_leaves_every_batched_command_one_outcome_the_logs(
    start_worker: Callable[..., WorkerProcess], pg: Engine, tmp_path: Path
) -> None:
    """As the default mode's test (tests/faults/test_restarts.py), batched: Redis (broker
    and result backend, append-only) killed and restarted mid-burst, batches in flight
    (their acknowledgements and outcome writes meet the restart); a producer that resends
    gets exactly one outcome per command, the command log's, and nothing failed."""
    server = RedisServer(tmp_path / "redis", appendonly=True).start()
    client = CountingClient(server.url, server.url, publish_timeout=2)
    try:
        worker = start_batch_worker(
            start_worker,
            BATCH,
            env={"ORDERS_BROKER_URL": server.url, "ORDERS_RESULT_BACKEND": server.url},
            name="redis-restart",
        )
        commands = burst_of_commands(count=1_500, orders=150)
        producer = Producer(client, commands)

        def restart() -> None:
            server.kill()
            time.sleep(1.0)  # away for a moment
            server.start()

        restarter = restart_after(producer.first_part_sent, restart)
        try:
            outcomes = producer.run(resend_every=2)
        finally:
            restarter.join()

        try:
            counts = assert_outcomes_match_the_log(pg, commands, outcomes)  # type: ignore[arg-type]
        except AssertionError as failed:
            raise AssertionError(f"{failed}\nworker log:\n{worker.log(400)}") from None
        assert counts["accepted"] >= 150, counts
        assert set(counts) <= {"accepted", "rejected"}, counts
        assert max(batch_sizes(worker)) > 1
        assert worker.process.poll() is None, "the worker died:\n" + worker.log()
    finally:
        client.close()
        server.stop()
