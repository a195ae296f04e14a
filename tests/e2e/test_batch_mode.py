"""Batch mode (``orders worker --batch N``, workers/batch/) on real Redis, PostgreSQL and
worker processes: the same promises as the default mode.

- a burst on few orders (so commands race, within a batch and between batches and
  workers), with rejections and invalid messages mixed in: one outcome per command,
  the command log's; each accepted command's events once; versions contiguous;
- a duplicate delivery, in the same batch or later, is answered from the command log;
  an id reused for another command is refused;
- kill -9 of a batch worker holding commands, then a new one: every command ends with
  exactly one outcome, nothing appended twice;
- the database stopped mid-burst: batches wait for it, none is failed.

The other faults (time limits, a bug in the batch path, one pool process killed, a warm
shutdown, the result backend or Redis away, poison in a batch, retries running out) are
in tests/faults/test_batch_faults.py.
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import redis
from sqlalchemy import Engine, func, select

from commands import AddItem, Command, CreateOrder, Outcome, PayOrder
from commands.client import CommandClient
from commands.envelope import encode
from store.schema import command_log, events
from tests.support.broker import send_raw, unacked_delivery_times, unacked_tasks
from tests.support.burst import assert_outcomes_match_the_log, send_all, wait_all
from tests.support.ids import new_id
from tests.support.servers import PostgresServer
from tests.support.workers import WorkerProcess

BATCH = 20
ORDERS = [f"batch-{n:02d}" for n in range(8)]
PRICES = {"apple": Decimal("1.50"), "banana": Decimal("0.75"), "cherry": Decimal("2.25")}
WAIT = 120.0
CRASH_ENV = {
    "ORDERS_VISIBILITY_TIMEOUT": "4",
    "ORDERS_TASK_TIME_LIMIT": "3",
    "ORDERS_COMMAND_TIME_LIMIT": "3",
}


def start_batch_worker(
    start_worker: Callable[..., WorkerProcess], batch: int = BATCH, **options: Any
) -> WorkerProcess:
    """``orders worker ... --batch N``."""
    return start_worker(via="orders", extra_args=(f"--batch={batch}",), **options)


def batches(worker: WorkerProcess) -> list[int]:
    """The size of each batch the worker logged."""
    sizes = []
    for line in worker.lines:
        if "batch of " in line and " answered" in line:
            sizes.append(int(line.split("batch of ", 1)[1].split(":", 1)[0]))
    return sizes


def create_orders(client: CommandClient) -> tuple[list[Command], dict[str, Outcome]]:
    """Every order created, then each item added at its price (so that a wrong price is
    always a PriceMismatch)."""
    creates: list[Command] = [CreateOrder(order_id, "customer-1") for order_id in ORDERS]
    outcomes = wait_all(send_all(client, creates, 30), timeout=WAIT, resend_every=None)
    assert {(o.status, o.version) for o in outcomes.values()} == {("accepted", 1)}
    adds: list[Command] = [
        AddItem(order_id, item, 1, price) for order_id in ORDERS for item, price in PRICES.items()
    ]
    outcomes.update(wait_all(send_all(client, adds, 30), timeout=WAIT, resend_every=None))
    assert {o.status for o in outcomes.values()} == {"accepted"}
    return [*creates, *adds], outcomes


def contended_burst(seed: int, size: int) -> list[Command]:
    """Many commands on few orders: mostly items added; some at a wrong price
    (PriceMismatch), some creating an order again (OrderAlreadyExists), some paying an
    order that does not exist (OrderNotFound)."""
    rng = random.Random(seed)
    burst: list[Command] = []
    while len(burst) < size:
        order, item = rng.choice(ORDERS), rng.choice(list(PRICES))
        roll = rng.random()
        if roll < 0.08:
            burst.append(AddItem(order, item, 1, PRICES[item] + Decimal("0.01")))
        elif roll < 0.12:
            burst.append(CreateOrder(order, "customer-2"))
        elif roll < 0.15:
            burst.append(PayOrder(f"ghost-{rng.randrange(1000)}", "cash"))
        else:
            burst.append(AddItem(order, item, rng.randint(1, 3), PRICES[item]))
    return burst


def expected(command: Command) -> tuple[str, str | None]:
    if isinstance(command, PayOrder):
        return ("rejected", "OrderNotFound")
    if isinstance(command, CreateOrder):
        return ("rejected", "OrderAlreadyExists")
    assert isinstance(command, AddItem)
    if command.price != PRICES[command.item_id]:
        return ("rejected", "PriceMismatch")
    return ("accepted", None)


def test_a_contended_burst_gets_one_outcome_per_command_the_command_logs(
    start_worker: Callable[..., WorkerProcess], client: CommandClient, pg: Engine
) -> None:
    worker = start_batch_worker(start_worker, concurrency=2, name="batch-burst")
    # A default-mode worker beside it: batches race with single commands too.
    start_worker(concurrency=1, name="batch-beside")
    creates, created = create_orders(client)
    burst = contended_burst(seed=5, size=600)
    invalid = [send_raw(client, {"type": "AddItem", "schema": 1}, new_id()) for _ in range(2)]
    bad_quantity = AddItem(ORDERS[0], "apple", 1, PRICES["apple"])
    envelope = encode(bad_quantity)
    envelope["payload"]["quantity"] = -5
    send_raw(client, envelope, bad_quantity.command_id)

    outcomes = wait_all(send_all(client, burst, 30), timeout=WAIT, resend_every=None)

    statuses = assert_outcomes_match_the_log(pg, [*creates, *burst], {**created, **outcomes})
    for command in burst:
        outcome = outcomes[command.command_id]
        assert (outcome.status, outcome.error) == expected(command), (command, outcome)
    assert statuses["accepted"] > 400 and statuses["rejected"] > 40
    for task_id in [*invalid, bad_quantity.command_id]:
        refused = client.outcome(task_id)
        assert refused is not None and (refused.status, refused.error) == (
            "rejected",
            "InvalidCommand",
        )
    sizes = batches(worker)
    print(f"\nbatch mode: {len(sizes)} batches, largest {max(sizes)}, sizes {sorted(sizes)[-10:]}")
    assert max(sizes) > 1, "the worker never took more than one command at a time"
    assert max(sizes) <= BATCH


def test_a_duplicate_delivery_is_answered_from_the_command_log(
    start_worker: Callable[..., WorkerProcess], client: CommandClient, pg: Engine
) -> None:
    start_batch_worker(start_worker, concurrency=1, name="batch-duplicates")
    client.send(CreateOrder(ORDERS[0], "customer-1")).wait(timeout=WAIT)
    add = AddItem(ORDERS[0], "apple", 2, PRICES["apple"])
    # Sent three times back to back: most likely in one batch, maybe in two.
    receipts = [client.send(add) for _ in range(3)]
    first = receipts[0].wait(timeout=WAIT)
    assert (first.status, first.version) == ("accepted", 2)

    # Later: a redelivery, and an id reused for another command.
    again = client.send(add).wait(timeout=WAIT)
    reused = CreateOrder("batch-other", "customer-3", command_id=add.command_id)
    client.send(reused)
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        refusal = client.outcome(add.command_id)
        if refusal is not None and refusal.error == "CommandIdReused":
            break
        time.sleep(0.05)
    assert again == first
    assert refusal is not None and refusal.status == "rejected", refusal

    with pg.connect() as conn:
        appended = conn.execute(
            select(func.count())
            .select_from(events)
            .where(events.c.metadata["command_id"].as_string() == add.command_id)
        ).scalar_one()
        logged = conn.execute(
            select(command_log.c.outcome).where(command_log.c.command_id == add.command_id)
        ).all()
        other = conn.execute(
            select(func.count()).select_from(events).where(events.c.aggregate_id == "batch-other")
        ).scalar_one()
    assert appended == 1
    assert [row.outcome for row in logged] == [first.to_dict()]
    assert other == 0


def _held(broker: redis.Redis, ids: set[str]) -> set[str]:
    return set(unacked_tasks(broker)) & ids


def test_kill_9_mid_batch_then_a_new_worker_applies_every_command_once(
    start_worker: Callable[..., WorkerProcess],
    client: CommandClient,
    broker: redis.Redis,
    pg: Engine,
) -> None:
    first = start_batch_worker(start_worker, env=CRASH_ENV, concurrency=2, name="batch-doomed")
    creates, created = create_orders(client)
    burst = contended_burst(seed=9, size=400)
    ids = {command.command_id for command in burst}
    receipts = send_all(client, burst, 30)

    # Kill -9 once it holds a batch's worth of commands unacknowledged: some being
    # decided, some committed and not yet acknowledged, some waiting.
    deadline = time.monotonic() + 30
    while len(_held(broker, ids)) < BATCH and time.monotonic() < deadline:
        time.sleep(0.002)
    os.killpg(first.process.pid, signal.SIGKILL)
    first.process.wait(timeout=10)
    held = _held(broker, ids)
    done_before = sum(1 for command_id in ids if client.outcome(command_id) is not None)
    assert held, "the worker never held a command"
    print(f"\nbatch crash: killed holding {len(held)} commands, {done_before} answered before")

    # Once the held messages are past the visibility timeout, a new worker's start-up
    # sweep puts them back on the queue.
    newest = max(unacked_delivery_times(broker), default=0.0)
    time.sleep(max(0.0, newest + 4 + 0.5 - time.time()))
    start_batch_worker(start_worker, env=CRASH_ENV, concurrency=2, name="batch-second")
    # Resending (same command id) covers a command lost between BRPOP and the unacked
    # hash at the kill, kombu's known gap (tests/e2e/test_crash.py).
    outcomes = wait_all(receipts, timeout=WAIT, resend_every=10)

    assert_outcomes_match_the_log(pg, [*creates, *burst], {**created, **outcomes})
    for command in burst:
        outcome = outcomes[command.command_id]
        assert (outcome.status, outcome.error) == expected(command), (command, outcome)
    deadline = time.monotonic() + 10
    while _held(broker, ids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _held(broker, ids)


def test_a_database_away_mid_batch_is_waited_for_never_failed(
    start_worker: Callable[..., WorkerProcess],
    client: CommandClient,
    private_postgres: tuple[PostgresServer, str, Engine],
) -> None:
    """The database stops while batches are decided: every batch caught by it is retried
    whole (nothing of it was committed) until the database is back; no command is
    `failed`, and the outcomes are the command log's."""
    server, url, engine = private_postgres
    worker = start_batch_worker(
        start_worker,
        env={
            "ORDERS_DATABASE_URL": url,
            "ORDERS_DB_RETRIES": "100",
            "ORDERS_DB_RETRY_DELAY": "0.2",
        },
    )
    commands: list[Command] = [CreateOrder(f"away-{n}", "customer-away") for n in range(40)]
    commands += [AddItem(f"away-{n % 40}", f"item-{n}", 1, PRICES["apple"]) for n in range(200)]
    first = send_all(client, commands[:60], timeout=30)
    server.stop()
    rest = send_all(client, commands[60:], timeout=30)
    time.sleep(3)  # batches are taken and put off while the database is away
    server.start()

    outcomes = wait_all(first + rest, timeout=WAIT, resend_every=None)
    engine.dispose()  # its connections died with the server
    counts = assert_outcomes_match_the_log(engine, commands, outcomes)  # type: ignore[arg-type]
    assert set(counts) <= {"accepted", "rejected"}, counts  # nothing failed
    assert "database unreachable" in worker.log(lines=None)
    assert worker.process.poll() is None
