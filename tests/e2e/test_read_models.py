"""The read side, end to end: real `celery worker` processes on Redis and PostgreSQL
keep the five read models equal to a fold of the events that this test computes itself.

What must hold whatever the interleaving (nothing here asserts timing):

1. After 1,000 racing commands from 4 producers the projections catch up (lag 0),
   `orders projections verify` passes, and every table equals the test's own fold of
   the `events` table, money as exact Decimals.
2. Events committed with no wake-up at all (the handler run in this process, as after a
   crash between the append and the wake-up) reach the models through the beat sweep.
3. Duplicate and out-of-order wake-ups and sweeps leave every read-side table,
   checkpoints included, byte-for-byte as it was.
4. A transaction still open across a later commit holds the projections back (lag, not a
   skipped event); once it commits both orders reach the models.
5. An event no projection can read parks every projection (status shows it; later
   events wait, never skipped); after the fix `orders projections retry` completes them.
"""

from __future__ import annotations

import json
import random
import re
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
import redis
from sqlalchemy import Engine, text

from commands import AddItem, CancelOrder, Command, CreateOrder, Outcome, PayOrder, RemoveItem
from commands.client import CommandClient
from commands.transport import PROJECTIONS_QUEUE, SWEEP_PROJECTIONS, WAKE_PROJECTIONS
from domain.events import OrderCreated
from domain.handler import CommandHandler
from readmodels.maintenance import ProjectionStatus, status
from readmodels.projections import PROJECTIONS
from store import open_event_store, open_global_log
from store.codec import event_to_row
from store.schema import events
from tests.support.cli import orders
from tests.support.readmodel_fold import (
    assert_models_equal_the_fold,
    clear_read_side,
    read_log,
    snapshot_read_side,
    utc,
)
from tests.support.workers import WorkerProcess

WAIT = 60.0
# 1,000 outcomes on a shared 2-core machine: a budget for all of them, not a speed limit.
OUTCOMES_WAIT = 180.0
NAMES = sorted(PROJECTIONS)
PRICES = {
    "apple": Decimal("1.10"),
    "pear": Decimal("0.35"),
    "melon": Decimal("2.99"),
    "honey": Decimal("19.95"),
    "salt": Decimal("0.01"),
    "tea": Decimal("7.77"),
}
DOMAIN_REJECTIONS = {
    "OrderNotFound",
    "OrderAlreadyExists",
    "OrderNotOpen",
    "PriceMismatch",
    "ItemNotInOrder",
    "NothingToPay",
    "OrderAlreadyPaid",
    "PaymentAfterCancellation",
    "CannotCancelPaidOrder",
    "OrderAlreadyCancelled",
}


@pytest.fixture(autouse=True)
def empty_read_side(pg: Engine) -> None:
    """``pg`` empties the events; the read models and checkpoints are emptied here."""
    clear_read_side(pg)


# -- helpers ------------------------------------------------------------------------------


def accepted(client: CommandClient, command: Command) -> Outcome:
    outcome = client.send(command).wait(timeout=WAIT)
    assert outcome.status == "accepted", (command, outcome)
    return outcome


def projection_status(pg: Engine) -> list[ProjectionStatus]:
    return status(pg, open_global_log(pg), PROJECTIONS.values())


def cli_status(env: dict[str, str]) -> list[dict[str, Any]]:
    result = orders("projections", "status", "--json", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    rows: list[dict[str, Any]] = json.loads(result.stdout)
    return rows


def assert_verify_passes(env: dict[str, str]) -> None:
    result = orders("projections", "verify", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "every read model matches the events" in result.stdout


def publish(client: CommandClient, name: str, **options: Any) -> str:
    task_id = str(uuid.uuid4())
    client._app.send_task(name, queue=PROJECTIONS_QUEUE, task_id=task_id, **options)
    return task_id


def projection_tasks_held(broker: redis.Redis) -> int:
    """Projection tasks waiting in the queue or delivered and not yet acknowledged
    (running, prefetched, or a retry waiting for its countdown)."""
    waiting = sum(
        broker.llen(key)
        for key in broker.scan_iter(match=f"{PROJECTIONS_QUEUE}*")
        if broker.type(key) == b"list"
    )
    held = 0
    for raw in broker.hvals("unacked"):
        message = json.loads(raw)[0]
        if (message.get("headers") or {}).get("task") in (WAKE_PROJECTIONS, SWEEP_PROJECTIONS):
            held += 1
    return waiting + held


def wait_projections_idle(broker: redis.Redis, timeout: float = WAIT, quiet: float = 1.5) -> None:
    """Until no projection task is queued or unacknowledged for ``quiet`` seconds."""
    deadline = time.monotonic() + timeout
    idle_since: float | None = None
    while time.monotonic() < deadline:
        if projection_tasks_held(broker) == 0:
            idle_since = idle_since or time.monotonic()
            if time.monotonic() - idle_since >= quiet:
                return
        else:
            idle_since = None
        time.sleep(0.1)
    raise AssertionError(f"projection tasks still held: {projection_tasks_held(broker)}")


def wait_until(check: Callable[[], Any], what: str, timeout: float = WAIT) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting until {what}")
        time.sleep(0.2)


def wait_caught_up(
    pg: Engine, broker: redis.Redis, client: CommandClient, timeout: float = WAIT
) -> int:
    """Until every projection has lag 0 and none is stuck; returns how many nudges it took.

    Nudges: a wake-up's read is held back by any transaction open anywhere on the server
    (transaction ids are cluster-wide, and others run tests against this server), and a
    held-back run is not retried: the beat sweep is what catches that up, and these
    workers run no beat. So when the lag stops moving while no projection task is
    pending, the test publishes one wake-up, as the sweep would, and reports it.
    """
    deadline = time.monotonic() + timeout
    nudges = 0
    last: Any = None
    still_since = time.monotonic()
    while True:
        report = projection_status(pg)
        if all(p.lag_events == 0 and not p.stuck for p in report):
            return nudges
        now = time.monotonic()
        if now >= deadline:
            raise AssertionError(f"projections did not catch up within {timeout} s: {report}")
        state = [(p.checkpoint, p.lag_events, p.stuck) for p in report]
        if state != last:
            last, still_since = state, now
        elif now - still_since > 5 and projection_tasks_held(broker) == 0:
            publish(client, WAKE_PROJECTIONS)
            nudges += 1
            still_since = now
        time.sleep(0.2)


def summary_row(pg: Engine, order_id: str) -> dict[str, Any] | None:
    with pg.connect() as conn:
        row = (
            conn.execute(text("SELECT * FROM order_summary WHERE order_id = :id"), {"id": order_id})
            .mappings()
            .first()
        )
    return dict(row) if row else None


def count_rows(pg: Engine, table: str, order_id: str) -> int:
    with pg.connect() as conn:
        return int(
            conn.execute(
                text(f"SELECT count(*) FROM {table} WHERE order_id = :id"), {"id": order_id}
            ).scalar_one()
        )


# A wake-up that finds events held back asks to run again ("retry"); either way it ran.
_WAKE_DONE = re.compile(r"Task orders\.wake_projections\[([0-9a-f-]{36})\] (?:succeeded|retry)")


def wake_ups_done(workers: list[WorkerProcess]) -> set[str]:
    return {m.group(1) for w in workers for line in list(w.lines) if (m := _WAKE_DONE.search(line))}


@pytest.fixture
def open_transaction(pg: Engine) -> Iterator[Callable[[], Any]]:
    """A connection the test keeps a transaction open on; rolled back if left open."""
    connections: list[Any] = []

    def begin() -> Any:
        conn = pg.connect()
        connections.append(conn)
        return conn, conn.begin()

    yield begin
    for conn in connections:
        conn.close()


# -- 1. a thousand racing commands -------------------------------------------------------

LOAD_ORDERS = [f"rm-{n:03d}" for n in range(100)]
PRODUCERS = 4
MIDDLE = 200  # per producer, between its creates and its closing commands
WEIGHTS = {
    "add": 55,
    "remove": 15,
    "add_wrong_price": 6,
    "pay": 6,
    "cancel": 3,
    "create_again": 5,
    "ghost": 5,
}


def customer_of(order_id: str) -> str:
    return f"cust-{int(order_id[-3:]) % 35:02d}"  # most customers have several orders


def load_plan(rng: random.Random, producer: int) -> list[Command]:
    """250 commands: create this producer's 25 orders, 200 drawn over all 100 orders,
    then pay or cancel its own orders."""
    mine = LOAD_ORDERS[producer::PRODUCERS]
    plan: list[Command] = [CreateOrder(o, customer_of(o)) for o in mine]
    kinds, weights = zip(*WEIGHTS.items(), strict=True)
    for n in range(MIDDLE):
        kind = rng.choices(kinds, weights)[0]
        order_id = rng.choice(LOAD_ORDERS)
        item = rng.choice(list(PRICES))
        if kind == "add":
            plan.append(AddItem(order_id, item, rng.randint(1, 4), PRICES[item]))
        elif kind == "remove":
            plan.append(RemoveItem(order_id, item))
        elif kind == "add_wrong_price":
            plan.append(AddItem(order_id, item, 1, PRICES[item] + Decimal("0.01")))
        elif kind == "pay":
            plan.append(PayOrder(order_id, rng.choice(["card", "cash", "voucher"])))
        elif kind == "cancel":
            plan.append(CancelOrder(order_id, f"changed mind {producer}/{n}"))
        elif kind == "create_again":
            plan.append(CreateOrder(order_id, "cust-impostor"))
        else:
            plan.append(AddItem(f"ghost-{producer}-{n}", item, 1, PRICES[item]))
    for order_id in mine:
        if rng.random() < 0.75:
            plan.append(PayOrder(order_id, rng.choice(["card", "cash"])))
        else:
            plan.append(CancelOrder(order_id, "no longer needed — sorry"))
    return plan


def produce(redis_url: str, plan: list[Command]) -> dict[str, Outcome]:
    """Send the plan from this thread's own client, then wait for every outcome."""
    producer = CommandClient(redis_url, redis_url, publish_timeout=5)
    try:
        for command in plan:
            producer.send(command)
        deadline = time.monotonic() + OUTCOMES_WAIT
        return {
            c.command_id: producer.wait(c.command_id, timeout=max(0.1, deadline - time.monotonic()))
            for c in plan
        }
    finally:
        producer.close()


def test_a_thousand_racing_commands_leave_every_model_equal_to_the_fold(
    start_worker: Callable[..., WorkerProcess],
    client: CommandClient,
    broker: redis.Redis,
    redis_url: str,
    worker_env: dict[str, str],
    pg: Engine,
) -> None:
    started = time.monotonic()
    workers = [start_worker(concurrency=2, name=f"rm-load-{n}") for n in range(2)]
    rng = random.Random(20_261_127)
    plans = [load_plan(random.Random(rng.random()), n) for n in range(PRODUCERS)]
    assert sum(len(plan) for plan in plans) == 1_000

    with ThreadPoolExecutor(PRODUCERS) as pool:
        results = list(pool.map(lambda plan: produce(redis_url, plan), plans))
    outcomes = {command_id: o for result in results for command_id, o in result.items()}
    commands_done = time.monotonic()

    assert len(outcomes) == 1_000
    statuses = Counter(o.status for o in outcomes.values())
    assert statuses["failed"] == 0, [o for o in outcomes.values() if o.status == "failed"][:3]
    assert statuses["accepted"] + statuses["rejected"] == 1_000
    errors = Counter(o.error for o in outcomes.values() if o.status == "rejected")
    assert set(errors) <= DOMAIN_REJECTIONS, errors
    assert len(read_log(pg)) == statuses["accepted"]  # one event per accepted command

    nudges = wait_caught_up(pg, broker, client)
    caught_up = time.monotonic()
    assert_verify_passes(worker_env)
    expected = assert_models_equal_the_fold(pg)

    # The workload exercised every model, deletions of lines included.
    summary = expected["order_summary"]
    by_status = Counter(row["status"] for row in summary.values())
    assert by_status["paid"] >= 20 and by_status["cancelled"] >= 5, by_status
    assert len(summary) == len(LOAD_ORDERS)
    assert expected["product_sales"] and expected["revenue_daily"] and expected["order_lines"]
    assert any(o.events == ("ItemRemoved",) for o in outcomes.values())
    assert any(
        c["orders_created"] > 1 and c["lifetime_value"] > 0
        for c in expected["customer_stats"].values()
    )
    assert all(w.process.poll() is None for w in workers)
    print(
        f"\nread models: 1000 commands ({dict(statuses)}, rejected {dict(errors)}) in "
        f"{commands_done - started:.1f} s; caught up {caught_up - commands_done:.1f} s later "
        f"(nudges needed: {nudges}); {dict(by_status)}"
    )


# -- 2. a crash between the append and the wake-up ---------------------------------------


def test_events_appended_without_a_wake_up_reach_the_models_through_the_sweep(
    start_worker: Callable[..., WorkerProcess],
    client: CommandClient,
    broker: redis.Redis,
    worker_env: dict[str, str],
    pg: Engine,
) -> None:
    start_worker(name="rm-nobeat")
    accepted(client, CreateOrder("sweep-1", "cust-sweep"))
    accepted(client, AddItem("sweep-1", "honey", 2, PRICES["honey"]))
    wait_caught_up(pg, broker, client)
    # The second command's wake-up may still be queued after the first one's run applied
    # both: it would project what follows, which this test says nothing wakes.
    wait_projections_idle(broker)
    assert summary_row(pg, "sweep-1")["version"] == 2  # type: ignore[index]

    # The events commit and nothing wakes the projections: this process is the worker
    # that died right after its commit. One order back-dated into another UTC day.
    handler = CommandHandler(open_event_store(pg))
    back_dated = CommandHandler(open_event_store(pg), clock=lambda: utc(2024, 2, 29, 23, 59, 59))
    for outcome in (
        handler.handle(AddItem("sweep-1", "salt", 3, PRICES["salt"])),
        handler.handle(PayOrder("sweep-1", "card")),
        back_dated.handle(CreateOrder("sweep-2", "cust-sweep")),
        back_dated.handle(AddItem("sweep-2", "tea", 1, PRICES["tea"])),
        back_dated.handle(PayOrder("sweep-2", "cash")),
    ):
        assert outcome.status == "accepted", outcome

    time.sleep(2)  # a wake-up, had one been sent, would have run by now
    assert summary_row(pg, "sweep-1")["version"] == 2  # type: ignore[index]
    assert summary_row(pg, "sweep-2") is None
    assert all(p.lag_events == 5 for p in projection_status(pg))

    start_worker(env={"ORDERS_SWEEP_INTERVAL": "1"}, beat=True, name="rm-beat")

    def swept() -> bool:
        first, second = summary_row(pg, "sweep-1"), summary_row(pg, "sweep-2")
        return bool(first and first["version"] == 4 and second and second["status"] == "paid")

    wait_until(swept, "the sweep projected both orders")
    wait_until(
        lambda: all(p.lag_events == 0 for p in projection_status(pg)), "every lag is 0 (sweep)"
    )
    assert_verify_passes(worker_env)
    expected = assert_models_equal_the_fold(pg)
    assert summary_row(pg, "sweep-1")["total"] == Decimal("39.93")  # type: ignore[index]
    assert {key[0].isoformat() for key in expected["revenue_daily"]} >= {"2024-02-29"}
    assert len(expected["revenue_daily"]) == 2
    [stats] = expected["customer_stats"].values()
    assert (stats["orders_created"], stats["orders_paid"], stats["lifetime_value"]) == (
        2,
        2,
        Decimal("47.70"),
    )


# -- 3. duplicate and out-of-order wake-ups ----------------------------------------------


def test_duplicate_and_out_of_order_wake_ups_change_nothing(
    start_worker: Callable[..., WorkerProcess],
    client: CommandClient,
    broker: redis.Redis,
    worker_env: dict[str, str],
    pg: Engine,
) -> None:
    # DEBUG: a wake-up's "received" line, which this test reads, is a routine DEBUG line.
    workers = [start_worker(concurrency=2, name=f"rm-dup-{n}", loglevel="DEBUG") for n in range(2)]
    ids = [f"dup-{n}" for n in range(6)]
    rounds: list[list[Command]] = [
        [CreateOrder(o, f"cust-dup-{n % 2}") for n, o in enumerate(ids)],
        [AddItem(o, "apple", n + 1, PRICES["apple"]) for n, o in enumerate(ids)],
        [AddItem(o, "pear", 2, PRICES["pear"]) for o in ids],
        [RemoveItem(o, "pear") for o in ids[::3]],
        [PayOrder(o, "card") for o in ids[::2]] + [CancelOrder(ids[5], "duplicate order")],
    ]
    for batch in rounds:  # each round after the last: one order's commands in order
        receipts = [client.send(command) for command in batch]
        for receipt in receipts:
            outcome = receipt.wait(timeout=WAIT)
            assert outcome.status == "accepted", outcome
    wait_caught_up(pg, broker, client)
    wait_projections_idle(broker)
    with pg.connect() as conn:
        before = snapshot_read_side(conn)
    assert len(before["projection_checkpoints"]) == len(PROJECTIONS)
    assert before["order_summary"] and before["revenue_daily"]

    published = []
    for n in range(60):
        name = SWEEP_PROJECTIONS if n % 4 == 3 else WAKE_PROJECTIONS
        # Some late: delivered after others published after them.
        options = {"countdown": 1.5} if n % 5 == 0 else {}
        published.append(publish(client, name, **options))
    wait_projections_idle(broker)
    wait_until(
        lambda: set(published) <= _received(workers),
        "every published projection task was received by a worker",
    )
    wait_projections_idle(broker)

    with pg.connect() as conn:
        after = snapshot_read_side(conn)
    assert after == before
    assert all(p.lag_events == 0 and not p.stuck for p in projection_status(pg))
    assert_verify_passes(worker_env)
    assert_models_equal_the_fold(pg)


_RECEIVED = re.compile(r"Task orders\.(?:wake|sweep)_projections\[([0-9a-f-]{36})\] received")


def _received(workers: list[WorkerProcess]) -> set[str]:
    return {m.group(1) for w in workers for line in list(w.lines) if (m := _RECEIVED.search(line))}


# -- 4. a commit that lands after a later one ---------------------------------------------


def test_an_open_older_transaction_holds_projections_back_and_is_not_skipped(
    start_worker: Callable[..., WorkerProcess],
    client: CommandClient,
    broker: redis.Redis,
    worker_env: dict[str, str],
    pg: Engine,
    open_transaction: Callable[[], Any],
) -> None:
    workers = [start_worker(name="rm-order", loglevel="DEBUG")]  # wake-ups' lines are DEBUG
    accepted(client, CreateOrder("late-0", "cust-late"))
    wait_caught_up(pg, broker, client)
    assert summary_row(pg, "late-0") is not None

    # A: inserted, not committed.
    event_a = OrderCreated(
        aggregate_id="late-a",
        version=1,
        event_id=str(uuid.uuid4()),
        timestamp=datetime.now(UTC),
        customer_id="cust-late",
    )
    conn_a, transaction_a = open_transaction()
    conn_a.execute(events.insert(), event_to_row(event_a))
    xid_a = int(conn_a.execute(text("SELECT pg_current_xact_id()::text")).scalar_one())

    # B: through a worker, committed while A is open; its wake-up runs.
    wakes_before = wake_ups_done(workers)
    accepted(client, CreateOrder("late-b", "cust-late"))
    wait_until(lambda: wake_ups_done(workers) - wakes_before, "a wake-up ran after B")
    time.sleep(2)

    assert summary_row(pg, "late-b") is None, "B was projected past A's open transaction"
    report = projection_status(pg)
    assert all(p.lag_events >= 1 for p in report), report
    assert not any(p.stuck for p in report)

    transaction_a.commit()
    accepted(client, CreateOrder("late-c", "cust-late"))  # any accepted command wakes them
    nudges = wait_caught_up(pg, broker, client)
    for order_id in ("late-a", "late-b", "late-c"):
        assert summary_row(pg, order_id) is not None, order_id

    with pg.connect() as conn:
        xid_b = int(
            conn.execute(
                text("SELECT transaction_id::text FROM events WHERE aggregate_id = 'late-b'")
            ).scalar_one()
        )
    assert xid_a < xid_b  # A really is the older transaction, committed after B
    assert_verify_passes(worker_env)
    expected = assert_models_equal_the_fold(pg)
    assert expected["customer_stats"][("cust-late",)]["orders_created"] == 4
    print(f"\nopen transaction: caught up after the commit (nudges needed: {nudges})")


def test_events_held_back_by_a_foreign_transaction_are_projected_once_it_ends(
    start_worker: Callable[..., WorkerProcess],
    client: CommandClient,
    pg: Engine,
    open_transaction: Callable[[], Any],
) -> None:
    """Regression: a transaction that only holds an id (anyone's, on any database of the
    server) held a command's event back, its wake-up reported "caught up", and nothing
    looked again before the sweep, or ever without beat. No beat runs here."""
    start_worker(name="rm-foreign")
    conn, transaction = open_transaction()
    conn.execute(text("SELECT pg_current_xact_id()"))

    accepted(client, CreateOrder("held-1", "cust-held"))
    time.sleep(1)
    assert summary_row(pg, "held-1") is None  # held back, as it must be
    transaction.rollback()

    wait_until(
        lambda: summary_row(pg, "held-1") is not None,
        "the held-back order is projected",
        timeout=15,
    )


# -- 5. a poison event -------------------------------------------------------------------


def test_a_poison_event_parks_every_projection_until_fixed_and_retried(
    start_worker: Callable[..., WorkerProcess],
    client: CommandClient,
    broker: redis.Redis,
    worker_env: dict[str, str],
    pg: Engine,
) -> None:
    start_worker(name="rm-poison")
    accepted(client, CreateOrder("poison-1", "cust-poison"))
    accepted(client, AddItem("poison-1", "melon", 2, PRICES["melon"]))
    wait_caught_up(pg, broker, client)
    with pg.connect() as conn:
        checkpoints_before = conn.execute(
            text("SELECT name, transaction_id, position FROM projection_checkpoints ORDER BY name")
        ).all()

    # An event no code knows, at the order's next version, then a wake-up.
    bad_id = str(uuid.uuid4())
    with pg.begin() as conn:
        conn.execute(
            events.insert(),
            {
                "event_id": bad_id,
                "aggregate_type": "Order",
                "aggregate_id": "poison-1",
                "version": 3,
                "event_type": "OrderShipped",
                "schema_version": 1,
                "data": {},
                "metadata": {},
                "recorded_at": datetime.now(UTC),
            },
        )
    publish(client, WAKE_PROJECTIONS)

    def all_stuck() -> list[dict[str, Any]] | None:
        # Another wake-up each time round: one held back by a transaction open elsewhere
        # on the server would otherwise be the last (these workers run no beat).
        publish(client, WAKE_PROJECTIONS)
        rows = cli_status(worker_env)
        done = len(rows) == len(PROJECTIONS) and all(
            r["state"] == "STUCK"
            and "UnknownEventType" in (r["error"] or "")
            and r["parked"] >= 1
            and r["lag_events"] >= 1
            for r in rows
        )
        return rows if done else None

    stuck = wait_until(all_stuck, "status shows every projection stuck on the poison event")
    assert sorted(r["projection"] for r in stuck) == NAMES
    assert all("OrderShipped" in r["error"] for r in stuck)
    with pg.connect() as conn:
        parked = conn.execute(text("SELECT projection, event_id FROM parked_events")).all()
        checkpoints_stuck = conn.execute(
            text("SELECT name, transaction_id, position FROM projection_checkpoints ORDER BY name")
        ).all()
    assert sorted(parked) == [(name, bad_id) for name in NAMES]
    assert checkpoints_stuck == checkpoints_before  # stopped before it, skipped nothing

    # Later commands are accepted but wait behind the parked event: nothing skips it.
    for command in _later_commands():
        accepted(client, command)
    publish(client, WAKE_PROJECTIONS)
    wait_projections_idle(broker)
    assert summary_row(pg, "poison-2") is None
    assert count_rows(pg, "order_lines", "poison-2") == 0
    report = projection_status(pg)
    assert all(p.stuck and p.lag_events >= 5 for p in report), report
    assert_verify_passes(worker_env)  # behind, not wrong: each model is right to its checkpoint

    # The fix: the bad row was never a real event, so the operator removes it; then retry.
    with pg.begin() as conn:
        deleted = conn.execute(text("DELETE FROM events WHERE event_id = :id"), {"id": bad_id})
        assert deleted.rowcount == 1
    # One `orders projections retry NAME` per projection, run side by side (each takes
    # only its own projection's lock).
    with ThreadPoolExecutor(len(NAMES)) as pool:
        retried = dict(
            zip(
                NAMES,
                pool.map(lambda name: orders("projections", "retry", name, env=worker_env), NAMES),
                strict=True,
            )
        )
    for name, result in retried.items():
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.startswith(f"{name}: applied"), result.stdout
        assert "now stuck" not in result.stdout

    wait_caught_up(pg, broker, client)
    rows = cli_status(worker_env)
    assert all(
        (r["state"], r["parked"], r["lag_events"], r["error"]) == ("ok", 0, 0, None) for r in rows
    ), rows
    row = summary_row(pg, "poison-2")
    assert row is not None and row["status"] == "paid" and row["total"] == Decimal("20.30")
    assert count_rows(pg, "order_lines", "poison-2") == 2
    assert_verify_passes(worker_env)
    assert_models_equal_the_fold(pg)


def _later_commands() -> list[Command]:
    return [
        CreateOrder("poison-2", "cust-poison"),
        AddItem("poison-2", "honey", 1, PRICES["honey"]),
        AddItem("poison-2", "pear", 1, PRICES["pear"]),
        PayOrder("poison-2", "card"),
    ]
