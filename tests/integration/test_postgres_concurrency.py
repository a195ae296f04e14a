"""Real races on PostgreSQL: many writers, one stream, exactly one winner per version."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import TypeVar

import pytest
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError

from commands import AddItem, CreateOrder, Outcome
from domain.errors import VersionConflict
from domain.events import Event, ItemAdded
from domain.handler import CommandHandler, RetryPolicy, load_order
from store import open_event_store
from tests.support.events import created, item_added
from tests.support.store import row_counts

WRITERS = 8
ROUNDS = 200
BARRIER_TIMEOUT = 30.0

T = TypeVar("T")


def run_together(count: int, work: Callable[[int, threading.Barrier], T]) -> list[T]:
    """Run ``work(index, barrier)`` on ``count`` threads; re-raise the first failure.

    A thread that fails aborts the barrier, so the others stop waiting instead of hanging.
    """
    barrier = threading.Barrier(count, timeout=BARRIER_TIMEOUT)

    def guarded(index: int) -> T:
        try:
            return work(index, barrier)
        except BaseException:
            barrier.abort()
            raise

    with ThreadPoolExecutor(max_workers=count) as pool:
        futures = [pool.submit(guarded, index) for index in range(count)]
        return [future.result() for future in futures]


def test_racing_writers_get_exactly_one_winner_per_version(pg: Engine) -> None:
    store = open_event_store(pg)
    order_id = "order-race"
    wins: list[tuple[int, int, Event]] = []  # (round, writer, event)
    conflicts: list[tuple[int, int, int, VersionConflict]] = []  # (round, writer, read, error)
    lock = threading.Lock()

    def writer(index: int, barrier: threading.Barrier) -> None:
        for round_ in range(ROUNDS):
            version = store.latest_version(order_id)
            # Everyone has read the same version before anyone appends: a real collision.
            barrier.wait()
            event: Event = (
                created(order_id, customer_id=f"writer-{index}")
                if version == 0
                else item_added(order_id, version + 1, item_id=f"writer-{index}")
            )
            try:
                assert store.append(order_id, version, [event]) == version + 1
            except VersionConflict as conflict:
                with lock:
                    conflicts.append((round_, index, version, conflict))
            else:
                with lock:
                    wins.append((round_, index, event))
            # Nobody reads the next round's version before every append of this one ended.
            barrier.wait()

    run_together(WRITERS, writer)

    stored = store.load(order_id)
    versions = [event.version for event in stored]
    assert len(wins) == ROUNDS
    assert len(conflicts) == ROUNDS * (WRITERS - 1)
    assert versions == list(range(1, len(wins) + 1))
    assert Counter(round_ for round_, _, _ in wins) == Counter(range(ROUNDS))
    assert {event.event_id for event in stored} == {event.event_id for _, _, event in wins}
    assert {event.version: event.event_id for _, _, event in wins} == {
        event.version: event.event_id for event in stored
    }
    for round_, _, read, conflict in conflicts:
        assert read == round_
        assert conflict.stream == f"Order-{order_id}"
        assert conflict.expected == read
        assert conflict.actual == read + 1
    # The race reached the database: some losers were stopped by the unique version key
    # itself, not only by the read-then-check inside append.
    assert any(isinstance(c.__cause__, IntegrityError) for *_, c in conflicts)
    assert row_counts(pg)["events"] == ROUNDS


@pytest.mark.parametrize("repeat", range(5))
def test_concurrent_add_items_through_the_handler_all_apply(pg: Engine, repeat: int) -> None:
    store = open_event_store(pg)
    order_id = f"order-{repeat}"
    handler = CommandHandler(store, retry=RetryPolicy(max_attempts=50))
    assert handler.handle(CreateOrder(order_id, customer_id="customer-123")).accepted
    commands = [
        AddItem(order_id, item_id=f"item-{index}", quantity=index + 1, price=Decimal("1.25"))
        for index in range(WRITERS)
    ]

    def send(index: int, barrier: threading.Barrier) -> Outcome:
        barrier.wait()
        return handler.handle(commands[index])

    outcomes = run_together(WRITERS, send)

    assert [outcome.status for outcome in outcomes] == ["accepted"] * WRITERS, outcomes
    assert sorted(outcome.version or 0 for outcome in outcomes) == list(range(2, WRITERS + 2))
    stored = store.load(order_id)
    assert [event.version for event in stored] == list(range(1, WRITERS + 2))
    added = [event for event in stored if isinstance(event, ItemAdded)]
    assert len(added) == WRITERS
    assert sorted(event.item_id for event in added) == sorted(c.item_id for c in commands)
    for outcome, command in zip(outcomes, commands, strict=True):
        assert store.find_outcome(command.command_id) == outcome
        event = stored[(outcome.version or 0) - 1]
        assert isinstance(event, ItemAdded)
        assert event.item_id == command.item_id
        assert event.metadata.command_id == command.command_id
    order = load_order(store, order_id)
    assert order.version == WRITERS + 1
    assert order.total == sum(
        (Decimal("1.25") * (index + 1) for index in range(WRITERS)), Decimal("0.00")
    )
    assert row_counts(pg)["command_log"] == WRITERS + 1


def test_one_command_delivered_to_many_workers_at_once_applies_once(pg: Engine) -> None:
    store = open_event_store(pg)
    order_id = "order-redelivered"
    handler = CommandHandler(store, retry=RetryPolicy(max_attempts=50))
    assert handler.handle(CreateOrder(order_id, customer_id="customer-123")).accepted
    command = AddItem(order_id, item_id="apple", quantity=3, price=Decimal("1.50"))

    def deliver(_index: int, barrier: threading.Barrier) -> Outcome:
        barrier.wait()
        return handler.handle(command)

    outcomes = run_together(WRITERS, deliver)

    assert len(set(outcomes)) == 1
    assert outcomes[0].accepted
    assert outcomes[0].version == 2
    assert [event.version for event in store.load(order_id)] == [1, 2]
    assert store.find_outcome(command.command_id) == outcomes[0]
    assert row_counts(pg) == {"events": 2, "command_log": 2, "snapshots": 0}
