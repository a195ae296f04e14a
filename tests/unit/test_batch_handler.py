"""``CommandHandler.handle_many`` on the in-memory store: decided in order, each command
alone in what goes wrong for it, the whole batch undone when the store fails."""

from __future__ import annotations

import pytest

from commands import AddItem, CreateOrder, PayOrder
from domain.handler import CommandHandler, RetryPolicy
from tests.support.commands import add, create, pay
from tests.support.fakes import FakeEventStore, RacingEventStore


def handler_over(store: FakeEventStore, attempts: int = 10) -> CommandHandler:
    return CommandHandler(store, retry=RetryPolicy(max_attempts=attempts, base_delay=0))


def test_commands_on_one_order_see_each_others_events() -> None:
    store = FakeEventStore()
    batch = [create("o1"), add("o1"), create("o2"), add("o1", "banana", 1, "0.75"), pay("o1")]

    outcomes = handler_over(store).handle_many(batch)

    assert [(o.status, o.version) for o in outcomes] == [
        ("accepted", 1),
        ("accepted", 2),
        ("accepted", 1),
        ("accepted", 3),
        ("accepted", 4),
    ]
    assert store.load_streams_calls == 1 and store.write_batches == 1
    assert [o.command_id for o in outcomes] == [c.command_id for c in batch]


def test_an_expected_version_is_held_against_the_batch_before_it() -> None:
    store = FakeEventStore()
    handler_over(store).handle(create("o1"))
    first = AddItem("o1", "apple", 1, "1.50", expected_version=1)
    second = AddItem("o1", "banana", 1, "0.75", expected_version=1)

    outcomes = handler_over(store).handle_many([first, second])

    assert (outcomes[0].status, outcomes[1].status, outcomes[1].error) == (
        "accepted",
        "rejected",
        "VersionConflict",
    )


def test_a_lost_race_is_decided_again_against_the_winner() -> None:
    store = RacingEventStore(conflicts=0)
    handler_over(store).handle(create("o1"))
    store.conflicts = 1

    [outcome, other] = handler_over(store).handle_many([add("o1"), create("o2")])

    assert (outcome.status, outcome.version) == ("accepted", 3)  # after the rival's event
    assert other.status == "accepted"


def test_a_command_that_loses_every_race_fails_alone() -> None:
    store = RacingEventStore(conflicts=0)
    handler_over(store).handle(create("o1"))
    store.conflicts = 3  # the first command's three attempts

    [lost, won] = handler_over(store, attempts=3).handle_many([add("o1"), create("o2")])

    assert (lost.status, lost.error) == ("failed", "VersionConflict")
    assert won.status == "accepted"
    assert store.outcomes[lost.command_id] == lost


def test_an_id_reused_in_the_batch_is_refused_and_a_twin_answered() -> None:
    store = FakeEventStore()
    created = create("o1")
    twin = CreateOrder("o1", "customer-123", command_id=created.command_id)
    reused = PayOrder("o1", "cash", command_id=created.command_id)

    [first, again, refused] = handler_over(store).handle_many([created, twin, reused])

    assert again == first
    assert (refused.status, refused.error) == ("rejected", "CommandIdReused")
    assert len(store.streams["o1"]) == 1


def test_a_store_failure_mid_batch_writes_nothing() -> None:
    class Failing(FakeEventStore):
        def save_snapshot(self, snapshot: object) -> None:
            raise ConnectionError("the database went away")

    store = Failing()
    with pytest.raises(ConnectionError):
        CommandHandler(store, snapshot_every=1).handle_many([create("o1"), add("o1")])

    assert store.stored_counts() == {"events": 0, "command_log": 0, "snapshots": 0}
