"""The command handler against the in-memory store: outcomes, idempotency, races, snapshots."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from commands import CancelOrder, Command, CreateOrder, Outcome, RemoveItem
from domain.decide import Limits
from domain.handler import CommandHandler, RetryPolicy, load_order
from domain.order import Line, Order, fold
from domain.snapshots import Snapshot, take_snapshot
from tests.support.commands import ORDER, add, create, pay
from tests.support.fakes import FakeEventStore, RacingEventStore

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def handler_for(store: FakeEventStore, **kw: Any) -> CommandHandler:
    kw.setdefault("sleep", lambda _seconds: None)
    kw.setdefault("rng", random.Random(0))
    return CommandHandler(store, clock=lambda: NOW, **kw)


def given(store: FakeEventStore, *commands: Command) -> FakeEventStore:
    """Run ``commands`` through a plain handler, then reset the store's counters."""
    handler = handler_for(store)
    for command in commands:
        assert handler.handle(command).accepted
    store.append_calls = 0
    store.load_calls.clear()
    store.saved_snapshots.clear()
    return store


def event_types(store: FakeEventStore) -> list[str]:
    return [event.event_type for event in store.streams.get(ORDER, [])]


WALKTHROUGH = (create(ORDER), add(ORDER, "apple", 3, "1.50"), add(ORDER, "banana", 2, "0.75"))

# -- outcomes ----------------------------------------------------------------------------


def test_accepted_command_appends_its_events_and_records_the_outcome() -> None:
    store = FakeEventStore()
    command = create(ORDER)

    outcome = handler_for(store).handle(command)

    assert outcome == Outcome(
        status="accepted",
        command_id=command.command_id,
        order_id=ORDER,
        version=1,
        events=("OrderCreated",),
    )
    assert event_types(store) == ["OrderCreated"]
    assert store.find_outcome(command.command_id) == outcome
    assert store.command_types[command.command_id] == "CreateOrder"


def test_walkthrough_through_the_handler() -> None:
    store = given(FakeEventStore(), *WALKTHROUGH)

    outcome = handler_for(store).handle(pay(ORDER))

    assert (outcome.status, outcome.version, outcome.events) == ("accepted", 4, ("OrderPaid",))
    assert str(load_order(store, ORDER)) == (
        "Order(id=order-001, customer=customer-123, items=2, total=$6.00, status=paid, version=4)"
    )


def test_events_carry_the_handlers_clock() -> None:
    store = FakeEventStore()

    handler_for(store).handle(create(ORDER))

    assert store.streams[ORDER][0].timestamp == NOW


def test_rejected_command_is_recorded_and_appends_nothing() -> None:
    store = given(FakeEventStore(), *WALKTHROUGH, pay(ORDER))
    command = pay(ORDER)

    outcome = handler_for(store).handle(command)

    assert outcome.status == "rejected"
    assert outcome.error == "OrderAlreadyPaid"
    assert outcome.message == "order order-001 is already paid"
    assert outcome.version is None
    assert outcome.events == ()
    assert store.append_calls == 0
    assert store.latest_version(ORDER) == 4
    assert store.find_outcome(command.command_id) == outcome


def test_command_on_missing_order_is_rejected() -> None:
    store = FakeEventStore()

    outcome = handler_for(store).handle(add(ORDER))

    assert (outcome.status, outcome.error) == ("rejected", "OrderNotFound")
    assert store.streams == {}


# -- idempotency -------------------------------------------------------------------------


def test_repeated_command_id_returns_the_recorded_outcome_and_appends_nothing() -> None:
    store = given(FakeEventStore(), create(ORDER))
    command = add(ORDER)
    handler = handler_for(store)
    first = handler.handle(command)

    again = handler.handle(command)

    assert again == first
    assert store.append_calls == 1
    assert event_types(store) == ["OrderCreated", "ItemAdded"]
    assert load_order(store, ORDER).lines["apple"].quantity == 3


def test_repeated_rejected_command_stays_rejected_even_when_it_would_now_succeed() -> None:
    store = FakeEventStore()
    handler = handler_for(store)
    command = add(ORDER)
    first = handler.handle(command)
    assert first.error == "OrderNotFound"
    handler.handle(create(ORDER))
    store.append_calls = 0

    again = handler.handle(command)

    assert again == first
    assert store.append_calls == 0
    assert event_types(store) == ["OrderCreated"]


def test_redelivery_that_loses_the_race_to_record_returns_the_winners_outcome() -> None:
    class TwinDeliveryStore(FakeEventStore):
        """Once armed, another delivery of the same command writes just before ours."""

        armed = False

        def append(self, aggregate_id: str, expected_version: int, events: Any, **kw: Any) -> int:
            if self.armed:
                self.armed = False
                self._write(aggregate_id, expected_version, events, **kw)
            return super().append(aggregate_id, expected_version, events, **kw)

    store = given(TwinDeliveryStore(), create(ORDER))
    store.armed = True
    command = add(ORDER)

    outcome = handler_for(store).handle(command)

    assert outcome.accepted
    assert outcome == store.find_outcome(command.command_id)  # the store gives copies
    assert event_types(store) == ["OrderCreated", "ItemAdded"]


# -- expected version --------------------------------------------------------------------


def test_stale_expected_version_is_rejected_without_retry() -> None:
    store = given(FakeEventStore(), create(ORDER))
    sleeps: list[float] = []

    outcome = handler_for(store, sleep=sleeps.append).handle(add(ORDER, expected_version=0))

    assert outcome.status == "rejected"
    assert outcome.error == "VersionConflict"
    assert outcome.message == "stream Order-order-001: expected version 0, actual version 1"
    assert store.append_calls == 0
    assert sleeps == []
    assert event_types(store) == ["OrderCreated"]


def test_current_expected_version_is_accepted() -> None:
    store = given(FakeEventStore(), create(ORDER))

    outcome = handler_for(store).handle(add(ORDER, expected_version=1))

    assert (outcome.status, outcome.version) == ("accepted", 2)


# -- lost races --------------------------------------------------------------------------


def test_lost_race_reloads_decides_again_and_is_accepted() -> None:
    store = given(RacingEventStore(), create(ORDER))
    store.conflicts = 2

    outcome = handler_for(store).handle(add(ORDER, "apple", 3, "1.50"))

    assert (outcome.status, outcome.version) == ("accepted", 4)
    assert store.append_calls == 3
    assert event_types(store) == ["OrderCreated", "ItemAdded", "ItemAdded", "ItemAdded"]
    assert load_order(store, ORDER).lines == {
        "rival-item": Line(2, Decimal("1.00")),
        "apple": Line(3, Decimal("1.50")),
    }


def test_redecision_after_a_lost_race_sees_the_rivals_events() -> None:
    store = given(RacingEventStore(), create(ORDER), add(ORDER, "rival-item", 9_999, "1.00"))
    store.conflicts = 1

    # The rival's write takes rival-item to the limit: adding one more now breaks a rule.
    outcome = handler_for(store).handle(add(ORDER, "rival-item", 1, "1.00"))

    assert (outcome.status, outcome.error) == ("rejected", "QuantityLimitExceeded")
    assert load_order(store, ORDER).lines["rival-item"].quantity == 10_000


def test_endless_conflicts_fail_after_max_attempts_with_backoff() -> None:
    policy = RetryPolicy()
    store = given(RacingEventStore(), create(ORDER))
    store.conflicts = None
    sleeps: list[float] = []
    command = add(ORDER)

    outcome = handler_for(store, retry=policy, sleep=sleeps.append).handle(command)

    assert outcome.status == "failed"
    assert outcome.error == "VersionConflict"
    assert store.find_outcome(command.command_id) == outcome
    assert store.append_calls == policy.max_attempts
    assert len(sleeps) == policy.max_attempts - 1
    for attempt, delay in enumerate(sleeps, start=1):
        assert 0 <= delay <= min(policy.max_delay, policy.base_delay * 2**attempt)
    assert "apple" not in load_order(store, ORDER).lines


def test_small_retry_policy_is_respected() -> None:
    policy = RetryPolicy(max_attempts=3, base_delay=1.0, max_delay=0.5)
    store = given(RacingEventStore(), create(ORDER))
    store.conflicts = None
    sleeps: list[float] = []

    outcome = handler_for(store, retry=policy, sleep=sleeps.append).handle(add(ORDER))

    assert outcome.status == "failed"
    assert store.append_calls == 3
    assert len(sleeps) == 2
    assert all(0 <= delay <= 0.5 for delay in sleeps)


def test_backoff_is_reproducible_with_a_seeded_rng() -> None:
    def delays() -> list[float]:
        store = given(RacingEventStore(), create(ORDER))
        store.conflicts = None
        sleeps: list[float] = []
        handler_for(store, sleep=sleeps.append, rng=random.Random(0)).handle(add(ORDER))
        return sleeps

    assert delays() == delays()


# -- snapshots ---------------------------------------------------------------------------


def test_snapshots_are_saved_every_n_versions() -> None:
    store = FakeEventStore()
    handler = handler_for(store, snapshot_every=2)

    for command in (*WALKTHROUGH, pay(ORDER)):
        handler.handle(command)

    assert [snapshot.version for snapshot in store.saved_snapshots] == [2, 4]
    assert store.snapshots[ORDER] == take_snapshot(fold(Order(ORDER), store.streams[ORDER]))


def test_no_snapshots_by_default() -> None:
    store = FakeEventStore()
    handler = handler_for(store)

    for command in (*WALKTHROUGH, pay(ORDER)):
        handler.handle(command)

    assert store.saved_snapshots == []


def test_rejected_command_takes_no_snapshot() -> None:
    store = given(FakeEventStore(), create(ORDER))

    handler_for(store, snapshot_every=1).handle(RemoveItem(ORDER, item_id="apple"))

    assert store.saved_snapshots == []


def test_loading_reads_only_events_after_the_snapshot() -> None:
    store = FakeEventStore()
    handler = handler_for(store, snapshot_every=2)
    for command in (*WALKTHROUGH, add(ORDER, "cherry", 1, "2.00")):
        handler.handle(command)
    store.load_calls.clear()

    outcome = handler.handle(pay(ORDER))

    assert outcome.accepted
    assert store.load_calls == [(ORDER, 4)]


def test_order_from_snapshot_equals_order_from_full_replay() -> None:
    store = FakeEventStore()
    handler = handler_for(store, snapshot_every=2)
    for command in (*WALKTHROUGH, pay(ORDER)):
        handler.handle(command)
    handler.handle(CancelOrder(ORDER, reason="too late"))  # rejected: paid

    assert load_order(store, ORDER) == fold(Order(ORDER), store.streams[ORDER])


def test_snapshot_with_unknown_schema_version_is_ignored_and_stream_replayed() -> None:
    store = given(FakeEventStore(), *WALKTHROUGH)
    store.save_snapshot(Snapshot(ORDER, 3, schema_version=99, state={"from": "the future"}))

    order = load_order(store, ORDER)

    assert store.load_calls == [(ORDER, 0)]
    assert order == fold(Order(ORDER), store.streams[ORDER])
    assert order.total == Decimal("6.00")


# -- a command id reused for another command --------------------------------------------


def test_a_command_id_reused_for_another_command_is_rejected_and_writes_nothing() -> None:
    store = given(FakeEventStore(), create(ORDER))
    paid_id = "8a4b0f0e-0000-4000-8000-00000000000a"
    handler = handler_for(store)
    assert handler.handle(add(ORDER)).accepted
    first = handler.handle(pay(ORDER, command_id=paid_id))
    assert first.accepted
    appended = store.append_calls

    # The same id, for an order that does not exist yet: before, it got OrderPaid back.
    reused = handler.handle(CreateOrder("order-010", "customer-9", command_id=paid_id))

    assert reused.status == "rejected"
    assert reused.error == "CommandIdReused"
    assert reused.order_id == "order-010"
    assert "was used before for a different command" in (reused.message or "")
    assert store.append_calls == appended
    assert "order-010" not in store.streams
    assert store.outcomes[paid_id] == first  # the command log keeps the first command's


def test_a_redelivered_command_gets_its_recorded_outcome_even_in_another_spelling() -> None:
    store = given(FakeEventStore(), create(ORDER))
    handler = handler_for(store)
    command_id = "8a4b0f0e-0000-4000-8000-00000000000b"
    first = handler.handle(add(ORDER, "apple", 3, "1.5", command_id=command_id))

    again = handler.handle(
        add(ORDER, "apple", 3, "1.50", command_id=command_id, correlation_id="c-2")
    )

    assert again == first  # the same command: "1.5" is "1.50", a correlation id says who


def test_a_reused_id_is_refused_when_its_first_command_was_rejected_too() -> None:
    store = FakeEventStore()
    handler = handler_for(store)
    command_id = "8a4b0f0e-0000-4000-8000-00000000000c"
    first = handler.handle(pay(ORDER, command_id=command_id))  # no such order
    assert first.status == "rejected"

    reused = handler.handle(CreateOrder(ORDER, "customer-123", command_id=command_id))

    assert (reused.status, reused.error) == ("rejected", "CommandIdReused")
    assert ORDER not in store.streams


def test_a_reused_id_losing_the_race_to_record_is_refused_too() -> None:
    # Both deliveries read "not recorded"; the other command commits first.
    store = FakeEventStore()
    handler = handler_for(store)
    command_id = "8a4b0f0e-0000-4000-8000-00000000000d"
    rival = CreateOrder("order-rival", "customer-1", command_id=command_id)
    original_load = store.load_stream
    raced = False

    def load_then_rival_commits(*args: Any, **kwargs: Any) -> Any:
        nonlocal raced
        state = original_load(*args, **kwargs)
        if not raced:
            raced = True
            handler_for(store).handle(rival)
        return state

    store.load_stream = load_then_rival_commits  # type: ignore[method-assign]
    outcome = handler.handle(CreateOrder(ORDER, "customer-123", command_id=command_id))

    assert (outcome.status, outcome.error) == ("rejected", "CommandIdReused")
    assert ORDER not in store.streams


def test_fail_records_a_failed_outcome_and_returns_an_earlier_one_when_there_is_one() -> None:
    store = given(FakeEventStore(), create(ORDER))
    handler = handler_for(store)
    command = add(ORDER)

    failed = handler.fail(command, "DatabaseUnavailable", "the event store was unreachable")
    accepted_before = handler.handle(pay(ORDER))

    assert failed == Outcome(
        status="failed",
        command_id=command.command_id,
        order_id=ORDER,
        error="DatabaseUnavailable",
        message="the event store was unreachable",
    )
    assert store.outcomes[command.command_id] == failed
    assert (
        handler.fail(pay(ORDER, command_id=accepted_before.command_id), "X", "y") == accepted_before
    )


def test_the_handler_applies_the_lines_limit_it_was_given() -> None:
    store = given(FakeEventStore(), create(ORDER), add(ORDER, "apple"))
    handler = handler_for(store, limits=Limits(max_lines=1))

    outcome = handler.handle(add(ORDER, "pear"))

    assert (outcome.status, outcome.error) == ("rejected", "TooManyLines")
