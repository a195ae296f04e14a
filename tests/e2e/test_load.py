"""Load: 500 commands over 50 orders from 4 producer threads, handled by 2 worker
processes of 2 children each, many racing on the same orders.

Nothing here is asserted about timing. What must hold whatever the interleaving:
every command gets exactly one terminal outcome, its command-log row is that outcome,
each accepted command appended exactly one event at the version it reported, versions
are contiguous, rejections name a rule the command could really have broken, and the
handler's view of every order (snapshot plus events) is the plain fold of its events.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine, func, select

from commands import AddItem, CancelOrder, Command, CreateOrder, Outcome, PayOrder, RemoveItem
from commands.client import CommandClient
from commands.envelope import encode
from domain.events import (
    Event,
    ItemAdded,
    ItemRemoved,
    OrderCancelled,
    OrderCreated,
    OrderPaid,
)
from store.schema import dead_letters
from tests.support.broker import TERMINAL, send_raw, wait_all
from tests.support.ids import new_id
from tests.support.store import (
    assert_contiguous_versions,
    assert_each_accepted_command_appended_once,
    assert_one_log_row_per_command,
    assert_state_is_the_fold,
    read_store,
)
from tests.support.workers import WorkerProcess

SEED = 20_241_127
ORDERS = [f"load-{n:03d}" for n in range(50)]
HOT = ORDERS[:3] + ORDERS[45:47]  # a large share of the traffic, so commands race
OPEN_ONLY = set(ORDERS[45:])  # never paid or cancelled: a wrong price is always PriceMismatch
PRICES = {"apple": Decimal("1.50"), "banana": Decimal("0.75"), "cherry": Decimal("2.25")}
REMOVABLE = ("banana", "cherry")  # apple stays in every order: there is always something to pay
WRONG_APPLE_PRICE = Decimal("1.55")
PRODUCERS = 4
RACE_COMMANDS = 350  # plus 100 to set up and 50 afterwards: 500 in all
UNREADABLE = 2  # of the race commands: envelopes whose command id is not a UUID
WAIT = 120.0  # a failure detector only: the machine is shared, nothing asserts on time

# What each kind of race command may end in, whatever the interleaving:
# (status, error) pairs; error None for accepted.
ALLOWED: dict[str, set[tuple[str, str | None]]] = {
    "add": {("accepted", None), ("rejected", "OrderNotOpen")},
    "add_wrong_price": {("rejected", "PriceMismatch"), ("rejected", "OrderNotOpen")},
    "remove": {("accepted", None), ("rejected", "ItemNotInOrder"), ("rejected", "OrderNotOpen")},
    "pay": {
        ("accepted", None),
        ("rejected", "OrderAlreadyPaid"),
        ("rejected", "PaymentAfterCancellation"),
    },
    "cancel": {
        ("accepted", None),
        ("rejected", "CannotCancelPaidOrder"),
        ("rejected", "OrderAlreadyCancelled"),
    },
    "create_again": {("rejected", "OrderAlreadyExists")},
    "ghost": {("rejected", "OrderNotFound")},
    "bad_quantity": {("rejected", "InvalidCommand")},
    "bad_price": {("rejected", "InvalidCommand")},
    "unreadable": {("rejected", "InvalidCommand")},
}
WEIGHTS = {
    "add": 40,
    "add_wrong_price": 8,
    "remove": 14,
    "pay": 7,
    "cancel": 5,
    "create_again": 4,
    "ghost": 4,
    "bad_quantity": 5,
    "bad_price": 5,
}


@dataclass(frozen=True)
class Sent:
    task_id: str
    kind: str
    order_id: str
    command: Command | None  # None for raw envelopes


def _plan(rng: random.Random, producer: int, count: int) -> list[tuple[str, Any]]:
    """``count`` (kind, command or raw envelope) pairs, drawn from ``rng``."""
    kinds, weights = zip(*WEIGHTS.items(), strict=True)
    plan: list[tuple[str, Any]] = []
    if producer == 0:
        for n in range(UNREADABLE):
            envelope = encode(AddItem(ORDERS[n], "apple", 1, PRICES["apple"]))
            plan.append(("unreadable", {**envelope, "command_id": f"not-a-uuid-{n}"}))
    while len(plan) < count:
        kind = rng.choices(kinds, weights)[0]
        order_id = rng.choice(HOT) if rng.random() < 0.4 else rng.choice(ORDERS)
        if kind in ("pay", "cancel") and order_id in OPEN_ONLY:
            kind = "add"
        item = rng.choice(list(PRICES))
        quantity = rng.randint(1, 3)
        if kind == "add":
            plan.append((kind, AddItem(order_id, item, quantity, PRICES[item])))
        elif kind == "add_wrong_price":
            plan.append((kind, AddItem(order_id, "apple", quantity, WRONG_APPLE_PRICE)))
        elif kind == "remove":
            plan.append((kind, RemoveItem(order_id, rng.choice(REMOVABLE))))
        elif kind == "pay":
            plan.append((kind, PayOrder(order_id, rng.choice(["card", "cash"]))))
        elif kind == "cancel":
            plan.append((kind, CancelOrder(order_id, f"changed my mind ({producer})")))
        elif kind == "create_again":
            plan.append((kind, CreateOrder(order_id, "customer-again")))
        elif kind == "ghost":
            ghost = f"ghost-{producer}-{len(plan)}"
            plan.append(
                (kind, rng.choice([AddItem(ghost, item, 1, PRICES[item]), PayOrder(ghost, "card")]))
            )
        else:
            envelope = encode(AddItem(order_id, item, quantity, PRICES[item]))
            field, value = ("quantity", 0) if kind == "bad_quantity" else ("price", "1.505")
            plan.append((kind, {**envelope, "payload": {**envelope["payload"], field: value}}))
    return plan


def _produce(redis_url: str, plan: list[tuple[str, Any]]) -> tuple[list[Sent], dict[str, Outcome]]:
    """Send the plan from this thread's own client, then wait for every outcome."""
    client = CommandClient(redis_url, redis_url, publish_timeout=5)
    try:
        sent = []
        for kind, item in plan:
            if isinstance(item, Command):
                client.send(item)
                sent.append(Sent(item.command_id, kind, item.order_id, item))
            else:
                readable = kind != "unreadable"
                task_id = item["command_id"] if readable else new_id()
                send_raw(client, item, task_id)
                sent.append(Sent(task_id, kind, item["payload"]["order_id"], None))
        return sent, wait_all(client, [s.task_id for s in sent], WAIT)
    finally:
        client.close()


def _event_matches(event: Event, command: Command) -> bool:
    match event, command:
        case OrderCreated(), CreateOrder():
            return event.customer_id == command.customer_id
        case ItemAdded(), AddItem():
            fields = (event.item_id, event.quantity, event.price)
            return fields == (command.item_id, command.quantity, command.price)
        case ItemRemoved(), RemoveItem():
            return event.item_id == command.item_id
        case OrderPaid(), PayOrder():
            return event.payment_method == command.payment_method
        case OrderCancelled(), CancelOrder():
            return event.reason == command.reason
    return False


def test_racing_commands_from_many_producers_keep_every_invariant(
    start_worker: Callable[..., WorkerProcess],
    client: CommandClient,
    redis_url: str,
    pg: Engine,
) -> None:
    workers = [start_worker(concurrency=2, name=f"load-{n}") for n in range(2)]
    started = time.monotonic()
    sent: list[Sent] = []
    outcomes: dict[str, Outcome] = {}

    # Set up: every order exists, then holds an apple, so there is always something to pay.
    creates: list[Command] = [CreateOrder(order_id, f"customer-{order_id}") for order_id in ORDERS]
    apples: list[Command] = [AddItem(order_id, "apple", 1, PRICES["apple"]) for order_id in ORDERS]
    for step, version in ((creates, 1), (apples, 2)):
        for command in step:
            client.send(command)
            sent.append(Sent(command.command_id, "setup", command.order_id, command))
        outcomes.update(wait_all(client, [c.command_id for c in step], WAIT))
        got = {(outcomes[c.command_id].status, outcomes[c.command_id].version) for c in step}
        assert got == {("accepted", version)}

    # The race: four producers at once, a seeded mix of valid and invalid commands.
    rng = random.Random(SEED)
    shares = [
        RACE_COMMANDS // PRODUCERS + (n < RACE_COMMANDS % PRODUCERS) for n in range(PRODUCERS)
    ]
    plans = [_plan(random.Random(rng.random()), n, share) for n, share in enumerate(shares)]
    race_started = time.monotonic()
    with ThreadPoolExecutor(PRODUCERS) as pool:
        results = list(pool.map(lambda plan: _produce(redis_url, plan), plans))
    race_seconds = time.monotonic() - race_started
    race = [s for produced, _ in results for s in produced]
    for _, produced_outcomes in results:
        outcomes.update(produced_outcomes)
    sent += race
    assert len(race) == RACE_COMMANDS

    # Rule-breakers whose rejection is certain, now that every order has settled.
    stored = read_store(pg)
    settled = assert_state_is_the_fold(pg, stored)
    final: list[tuple[Command, str]] = []
    for order_id in ORDERS:
        status = settled[order_id].status
        if status == "paid":
            final.append((PayOrder(order_id, "card"), "OrderAlreadyPaid"))  # pay twice
        elif status == "cancelled":
            final.append((AddItem(order_id, "apple", 1, PRICES["apple"]), "OrderNotOpen"))
        elif order_id in OPEN_ONLY:
            final.append((AddItem(order_id, "apple", 1, WRONG_APPLE_PRICE), "PriceMismatch"))
        else:
            final.append((RemoveItem(order_id, "durian"), "ItemNotInOrder"))
    for command, _ in final:
        client.send(command)
        sent.append(Sent(command.command_id, "final", command.order_id, command))
    outcomes.update(wait_all(client, [c.command_id for c, _ in final], WAIT))
    total_seconds = time.monotonic() - started

    # -- outcomes: one terminal outcome each, never "failed", each allowed for its kind --
    assert len(sent) == 500
    assert len({s.task_id for s in sent}) == len(sent) == len(outcomes)
    statuses = Counter(outcome.status for outcome in outcomes.values())
    assert set(statuses) <= set(TERMINAL)
    assert statuses["failed"] == 0, [o for o in outcomes.values() if o.status == "failed"][:3]
    for s in race:
        outcome = outcomes[s.task_id]
        assert (outcome.status, outcome.error) in ALLOWED[s.kind], (s, outcome)
        if s.kind == "add_wrong_price" and s.order_id in OPEN_ONLY:
            assert outcome.error == "PriceMismatch", (s, outcome)
        if s.kind == "unreadable":
            # No command id to read: the outcome names the Celery task, or nothing.
            assert outcome.command_id in ("", s.task_id), outcome
        else:
            assert outcome.command_id == s.task_id
        if s.kind in ("bad_quantity", "bad_price"):
            field = "quantity" if s.kind == "bad_quantity" else "price"
            assert (outcome.message or "").startswith(f"{field}:"), outcome
    for command, error in final:
        outcome = outcomes[command.command_id]
        assert (outcome.status, outcome.error) == ("rejected", error), (command, outcome)

    # -- the store: what the outcomes say, and nothing else --
    stored = read_store(pg)
    assert_contiguous_versions(stored)
    assert_each_accepted_command_appended_once(stored, outcomes)
    readable = [s.task_id for s in sent if s.kind != "unreadable"]
    assert_one_log_row_per_command(stored, outcomes, readable)
    with pg.connect() as conn:
        assert (
            conn.execute(select(func.count()).select_from(dead_letters)).scalar_one() == UNREADABLE
        )
    for s in sent:
        if s.command is None:  # raw envelopes: logged under the command's type and order
            row = stored.log.get(s.task_id)
            assert row is None or (row["command_type"], row["aggregate_id"]) == (
                "AddItem",
                s.order_id,
            )
    commands = {s.task_id: s.command for s in sent if s.command is not None}
    for event in stored.events:
        command = commands[event.metadata.command_id or ""]
        assert _event_matches(event, command), (event, command)
    assert set(stored.by_order()) == set(ORDERS)  # no ghost got an event

    # -- every order: the handler's view is the fold, and the last accepted outcome's --
    final_state = assert_state_is_the_fold(pg, stored)
    accepted_versions: dict[str, list[int]] = {}
    for outcome in outcomes.values():
        if outcome.accepted:
            accepted_versions.setdefault(outcome.order_id or "", []).append(outcome.version or 0)
    for order_id, stream in stored.by_order().items():
        versions = sorted(accepted_versions[order_id])
        assert versions == list(range(1, len(stream) + 1)), order_id
        assert final_state[order_id].version == versions[-1]
        kinds = [event.event_type for event in stream]
        closing = [k for k in kinds if k in ("OrderPaid", "OrderCancelled")]
        assert len(closing) <= 1, f"{order_id}: {kinds}"  # never paid twice, nor both
        if closing:
            assert kinds[-1] == closing[0], f"{order_id} changed after closing: {kinds}"
        expected_status = {"OrderPaid": "paid", "OrderCancelled": "cancelled"}
        assert final_state[order_id].status == expected_status.get(
            closing[0] if closing else "", "created"
        )
        assert final_state[order_id].lines["apple"].unit_price == PRICES["apple"]

    errors = Counter(o.error for o in outcomes.values() if o.status == "rejected")
    print(
        f"\nload: {len(sent)} commands, {statuses['accepted']} accepted, "
        f"{statuses['rejected']} rejected {dict(errors)}; "
        f"race of {RACE_COMMANDS} in {race_seconds:.1f} s ({RACE_COMMANDS / race_seconds:.0f}/s), "
        f"all in {total_seconds:.1f} s; workers {[w.process.pid for w in workers]}"
    )
