"""kill -9 of a worker that holds unacknowledged commands.

With ``task_acks_late`` a command stays in kombu's ``unacked`` hash (Redis) until its
task returns. A worker killed before that never acknowledges; once the message is older
than the visibility timeout, the next ``restore_visible`` sweep of a live worker puts it
back on its queue, and the command log makes handling it again write nothing.

Two things about kombu 5.7's Redis transport (kombu/transport/redis.py) shape these
tests:

* When it sweeps: once when a worker connects, then every ``unacked_restore_interval``
  seconds, scanning only every ``unacked_restore_throttle``-th time. kombu's defaults
  (10 and 10) stranded a killed worker's commands about 100 s; the project's config sets
  both (workers/celery_config.py), and a test below holds it to that.
* BRPOP takes a message off the queue list; only afterwards, in the worker, does the
  fetch script (workers/broker.py) write it to the ``unacked`` hash (the further
  messages the script pops are recorded in the same step). A worker killed in between
  loses the first for good: a known limit of the transport, pinned by a strict-xfail
  test below;
  the producer's remedy is to send the command again with the same id. The main test kills only at a moment with no command in that gap,
  so that its accounting (every command queued, held or done) holds at the kill.

To pick the moment, the worker's process group is frozen (SIGSTOP), the broker read,
and then either killed (SIGKILL) or resumed. A stopped worker acknowledges nothing, so
what the broker holds then is what it holds at the kill.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

import pytest
import redis
from sqlalchemy import Engine

from commands import AddItem, Command, CreateOrder, Outcome
from commands.client import CommandClient, OutcomeTimeout
from commands.transport import COMMANDS_QUEUE, HANDLE_COMMAND
from tests.support.broker import TERMINAL, unacked_delivery_times, unacked_tasks, wait_all
from tests.support.store import (
    assert_contiguous_versions,
    assert_each_accepted_command_appended_once,
    assert_one_log_row_per_command,
    assert_state_is_the_fold,
    read_store,
)
from tests.support.worker_logs import received_at, task_log
from tests.support.workers import WorkerProcess

VISIBILITY_TIMEOUT = 4
CRASH_ENV = {
    "ORDERS_VISIBILITY_TIMEOUT": str(VISIBILITY_TIMEOUT),
    "ORDERS_TASK_TIME_LIMIT": "3",
    "ORDERS_COMMAND_TIME_LIMIT": "3",
}
ORDERS = [f"crash-{n:02d}" for n in range(20)]
PRICES = {"apple": Decimal("1.50"), "banana": Decimal("0.75"), "cherry": Decimal("2.25")}
BURST = 300
DUPLICATE_CREATES = 15  # of the burst: rejected, and must be rejected exactly once too
WAIT = 120.0


@dataclass(frozen=True)
class Account:
    """Where the burst's commands are, as the broker and result backend see it."""

    queued: set[str]  # on the commands queue
    held: set[str]  # in the unacked hash: delivered, not acknowledged
    done: set[str]  # outcome stored (a finished command may still be held)
    hlen: int  # HLEN unacked, every message

    def in_transit(self, ids: set[str]) -> set[str]:
        """Off the queue, not (yet) in the unacked hash, not done."""
        return ids - self.queued - self.held - self.done


def _account(broker: redis.Redis, ids: set[str]) -> Account:
    queued = set()
    for raw in broker.lrange(COMMANDS_QUEUE, 0, -1):
        queued.add(str(json.loads(raw)["headers"]["id"]))
    pipe = broker.pipeline()
    ordered = sorted(ids)
    for task_id in ordered:
        pipe.exists(f"celery-task-meta-{task_id}")
    done = {task_id for task_id, exists in zip(ordered, pipe.execute(), strict=True) if exists}
    return Account(queued & ids, _held_commands(broker) & ids, done, int(broker.hlen("unacked")))


def _held_commands(broker: redis.Redis) -> set[str]:
    return {task_id for task_id, name in unacked_tasks(broker).items() if name == HANDLE_COMMAND}


def _kill_when(
    worker: WorkerProcess,
    broker: redis.Redis,
    ids: set[str],
    ready: Callable[[Account], bool],
    timeout: float = 30.0,
) -> tuple[Account, float] | None:
    """Once ``ids`` show up as unacked, freeze the worker, read the broker, and kill -9
    it if ``ready`` says so (else resume it and look again). Returns the account at
    the kill and its wall-clock time, or None if no moment was ready in time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _held_commands(broker) & ids:
            time.sleep(0.002)
            continue
        os.killpg(worker.process.pid, signal.SIGSTOP)
        account = _account(broker, ids)
        if ready(account):
            worker.kill()
            return account, time.time()
        os.killpg(worker.process.pid, signal.SIGCONT)
        time.sleep(0.005)
    return None


def _create_orders(client: CommandClient) -> list[str]:
    ids = [client.send(CreateOrder(order_id, "customer-1")).command_id for order_id in ORDERS]
    outcomes = wait_all(client, ids, WAIT)
    assert {(o.status, o.version) for o in outcomes.values()} == {("accepted", 1)}
    return ids


def _burst(seed: int, size: int = BURST) -> list[Command]:
    rng = random.Random(seed)
    burst: list[Command] = [
        CreateOrder(rng.choice(ORDERS), "customer-2") for _ in range(DUPLICATE_CREATES)
    ]
    while len(burst) < size:
        item = rng.choice(list(PRICES))
        burst.append(AddItem(rng.choice(ORDERS), item, rng.randint(1, 3), PRICES[item]))
    rng.shuffle(burst)
    return burst


def _send(client: CommandClient, burst: list[Command]) -> set[str]:
    for command in burst:
        client.send(command)
    return {command.command_id for command in burst}


def _start_after_visibility_timeout(
    start_worker: Callable[..., WorkerProcess], broker: redis.Redis, name: str
) -> WorkerProcess:
    """A new worker, started once every held message is older than the visibility
    timeout, so that its start-up sweep restores them (see the module docstring)."""
    newest = max(unacked_delivery_times(broker), default=0.0)
    time.sleep(max(0.0, newest + VISIBILITY_TIMEOUT + 0.5 - time.time()))
    return start_worker(env=CRASH_ENV, concurrency=2, name=name)


def _received(worker: WorkerProcess, task_ids: set[str], timeout: float = 10.0) -> set[str]:
    """Which of ``task_ids`` the worker's log shows as received (its log lags a little)."""
    deadline = time.monotonic() + timeout
    while True:
        got = set(received_at(worker.lines)) & task_ids
        if got == task_ids or time.monotonic() > deadline:
            return got
        time.sleep(0.1)


def test_a_killed_workers_commands_are_redelivered_and_applied_once(
    start_worker: Callable[..., WorkerProcess],
    client: CommandClient,
    broker: redis.Redis,
    pg: Engine,
) -> None:
    first = start_worker(env=CRASH_ENV, concurrency=2, name="crash-first")
    setup_ids = _create_orders(client)
    burst = _burst(seed=7)
    burst_ids = _send(client, burst)

    killed = _kill_when(
        first, broker, burst_ids, lambda a: bool(a.held) and not a.in_transit(burst_ids)
    )
    assert killed is not None, "the first worker never held a burst command"
    at_kill, killed_at = killed
    first_log = task_log(first.lines)
    print(
        f"\ncrash: killed with HLEN(unacked)={at_kill.hlen}: {len(at_kill.held)} commands "
        f"held, {len(at_kill.queued)} queued, {len(at_kill.done)} done; the first worker "
        f"had logged {len(first_log['succeeded'] & burst_ids)} of the burst as succeeded"
    )
    # At the kill, every command was on the queue, held unacknowledged, or done.
    assert at_kill.held, "the killed worker held no unacknowledged command"
    assert not at_kill.queued & at_kill.held
    assert at_kill.queued | at_kill.held | at_kill.done == burst_ids

    second = _start_after_visibility_timeout(start_worker, broker, "crash-second")
    all_ids = setup_ids + [command.command_id for command in burst]
    outcomes = wait_all(client, all_ids, WAIT)
    recovered_in = time.time() - killed_at

    # Every held command came back: the new worker received it from the broker again.
    assert _received(second, at_kill.held) == at_kill.held
    # No command is left unacknowledged once the new worker is done. (Projection
    # wake-ups may be: they retry themselves while the read models are held back.)
    deadline = time.monotonic() + 10
    while _held_commands(broker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _held_commands(broker), unacked_tasks(broker)

    # Every command: one terminal outcome, the one its kind must get.
    assert {o.status for o in outcomes.values()} <= set(TERMINAL)
    for command in burst:
        outcome = outcomes[command.command_id]
        if isinstance(command, AddItem):
            expected: tuple[str, str | None] = ("accepted", None)
        else:
            expected = ("rejected", "OrderAlreadyExists")
        assert (outcome.status, outcome.error) == expected, (command, outcome)

    stored = read_store(pg)
    assert_one_log_row_per_command(stored, outcomes, all_ids)
    per_command = stored.events_per_command()
    assert max(per_command.values()) == 1, "a command appended its events twice"
    assert_each_accepted_command_appended_once(stored, outcomes)
    assert len(stored.events) == len(ORDERS) + BURST - DUPLICATE_CREATES
    assert_contiguous_versions(stored)
    assert_state_is_the_fold(pg, stored)

    # Informational: held commands the first worker had finished before it died; the
    # redelivery found them in the command log and wrote nothing.
    print(
        f"crash: {len(at_kill.held)} held commands redelivered and applied once "
        f"({len(at_kill.held & at_kill.done)} had finished before the kill); all "
        f"{len(all_ids)} outcomes {recovered_in:.1f} s after the kill"
    )


def test_a_surviving_worker_redelivers_soon_after_the_visibility_timeout(
    start_worker: Callable[..., WorkerProcess],
    client: CommandClient,
    broker: redis.Redis,
    pg: Engine,
) -> None:
    survivor = start_worker(env=CRASH_ENV, concurrency=2, name="crash-survivor")
    doomed = start_worker(env=CRASH_ENV, concurrency=2, name="crash-doomed")
    _create_orders(client)
    burst = _burst(seed=11)
    burst_ids = _send(client, burst)
    # Each worker holds at most 2 messages (concurrency 2, prefetch multiplier 1), so
    # 3 held commands make it likely that the doomed worker holds one.
    killed = _kill_when(doomed, broker, burst_ids, lambda a: len(a.held) >= 3)
    if killed is None:
        pytest.skip("inconclusive: never saw 3 commands held at once")
    at_kill, killed_at = killed

    # The survivor sweeps the unacked hash every unacked_restore_interval (10 s); give
    # it the visibility timeout, a sweep interval and some slack.
    deadline = killed_at + VISIBILITY_TIMEOUT + 10 + 5
    with contextlib.suppress(OutcomeTimeout):
        wait_all(client, [command.command_id for command in burst], deadline - time.time())

    # Held at the kill and received by the survivor before it (or just after: its log
    # lags a little) means the survivor's own; any other was the killed worker's, and
    # can reach the survivor only through a restore.
    survivor_received = received_at(survivor.lines)
    orphans = {t for t in at_kill.held if survivor_received.get(t, math.inf) > killed_at + 1.0}
    if not orphans:
        pytest.skip("inconclusive: the killed worker held no command at the kill")
    # Not "has an outcome": the killed worker may have finished a command, result and
    # all, and died before acknowledging it. Redelivered means restored to the queue
    # (gone from the unacked hash) and received by the survivor.
    # The outcomes may all be in before the visibility timeout has even passed (the
    # killed worker finished its commands without acknowledging them): give the restore
    # until the deadline, looking now and then.
    while True:
        stranded = _held_commands(broker) & orphans
        not_redelivered = orphans - set(received_at(survivor.lines))
        if (not stranded and not not_redelivered) or time.time() >= deadline:
            break
        time.sleep(0.25)
    assert not stranded and not not_redelivered, (
        f"{len(stranded)} of {len(orphans)} commands held by the killed worker were still "
        f"in the unacked hash {time.time() - killed_at:.0f} s after the kill, "
        f"{len(not_redelivered)} never reached the surviving worker"
    )


@pytest.mark.xfail(
    strict=True,
    reason=(
        "BUG (at-most-once gap under the design's 'worker killed mid-command: redelivered', "
        "workers/celery_config.py + the Redis transport): BRPOP removes the message "
        "from the queue and only afterwards does the worker record it in 'unacked' "
        "(workers/broker.py: Channel._brpop_read -> FETCH_SCRIPT, kombu's QoS.append "
        "before it); a worker killed in between loses the command: no outcome, no "
        "command_log row, never redelivered"
    ),
)
def test_a_command_taken_off_the_queue_but_not_yet_unacked_is_not_lost(
    start_worker: Callable[..., WorkerProcess],
    client: CommandClient,
    broker: redis.Redis,
    pg: Engine,
) -> None:
    first = start_worker(env=CRASH_ENV, concurrency=2, name="transit-first")
    _create_orders(client)
    burst = _burst(seed=13, size=120)
    burst_ids = _send(client, burst)

    killed = _kill_when(first, broker, burst_ids, lambda a: bool(a.in_transit(burst_ids)))
    if killed is None:
        pytest.skip("inconclusive: no freeze caught a command between BRPOP and unacked")
    at_kill, killed_at = killed
    in_transit = at_kill.in_transit(burst_ids)
    print(f"\ntransit: killed with {len(in_transit)} commands off the queue and not unacked")

    _start_after_visibility_timeout(start_worker, broker, "transit-second")
    # Everything the broker still had comes back and is handled...
    others = [command.command_id for command in burst if command.command_id not in in_transit]
    wait_all(client, others, WAIT)
    # ...and the commands in transit at the kill should have been too.
    lost = {task_id for task_id in in_transit if client.outcome(task_id) is None}
    stored = read_store(pg)
    assert not lost, (
        f"{len(lost)} commands lost: no outcome {time.time() - killed_at:.0f} s after the "
        f"kill, {len(lost & set(stored.log))} in the command log, "
        f"{len(lost & _account(broker, lost).queued)} queued, "
        f"{len(lost & _held_commands(broker))} unacked"
    )


def test_a_producer_that_resends_gets_an_outcome_for_a_command_lost_in_transit(
    start_worker: Callable[..., WorkerProcess],
    client: CommandClient,
    broker: redis.Redis,
    pg: Engine,
) -> None:
    # The loss above is kombu's, and no worker setting closes it; a producer closes it
    # end to end by sending the same command again until it has an outcome.
    first = start_worker(env=CRASH_ENV, concurrency=2, name="resend-first")
    _create_orders(client)
    burst = _burst(seed=17, size=120)
    burst_ids = _send(client, burst)
    killed = _kill_when(first, broker, burst_ids, lambda a: bool(a.in_transit(burst_ids)))
    if killed is None:
        pytest.skip("inconclusive: no freeze caught a command between BRPOP and unacked")
    in_transit = killed[0].in_transit(burst_ids)
    start_worker(env=CRASH_ENV, concurrency=2, name="resend-second")

    by_id = {command.command_id: command for command in burst}
    outcomes = {
        command_id: client.wait(command_id, timeout=WAIT, resend_every=2, command=by_id[command_id])
        for command_id in burst_ids
    }

    stored = read_store(pg)
    assert in_transit <= set(outcomes)
    for command_id, outcome in outcomes.items():
        assert Outcome.from_dict(stored.log[command_id]["outcome"]) == outcome
    assert_contiguous_versions(stored)
