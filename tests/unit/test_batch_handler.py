"""``CommandHandler.handle_many`` on the in-memory store: decided in order, each command
alone in what goes wrong for it, the whole batch undone when the store fails."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial

import pytest

from commands import AddItem, CreateOrder, Outcome, PayOrder
from domain.events import Event
from domain.handler import CommandHandler, RetryPolicy
from domain.ports import Regroup, StreamState, Writes
from domain.snapshots import Snapshot
from tests.support.commands import add, create, pay
from tests.support.events import item_added
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


class GroupingStore(FakeEventStore):
    """A fake whose batches write in one go first (as PostgreSQL's do): the writes are
    buffered and made at the end of ``grouped``, unless ``rival`` gets in first: it
    writes, and the group, as the unique constraints would have it, is undone."""

    def __init__(self, rival: Callable[[FakeEventStore], None] | None = None) -> None:
        super().__init__()
        self.rival = rival
        self.groups = 0

    @contextmanager
    def grouped(self) -> Iterator[Writes]:
        self.groups += 1
        buffer = _Buffered()
        yield buffer
        if self.rival is not None:
            self.rival(self)
            self.rival = None
            raise Regroup("a rival wrote first")
        for write in buffer.writes:
            write(self)


class _Buffered:
    def __init__(self) -> None:
        self.writes: list[Callable[[FakeEventStore], object]] = []

    def load_stream(
        self, aggregate_id: str, *, snapshot_schema: int, command_id: str | None = None
    ) -> StreamState:
        raise Regroup("reads again")

    def append(
        self,
        aggregate_id: str,
        expected_version: int,
        events: Sequence[Event],
        *,
        command_type: str | None = None,
        outcome: Outcome | None = None,
        fingerprint: str | None = None,
    ) -> int:
        write = partial(
            FakeEventStore.append,
            aggregate_id=aggregate_id,
            expected_version=expected_version,
            events=events,
            command_type=command_type,
            outcome=outcome,
            fingerprint=fingerprint,
        )
        self.writes.append(write)
        return expected_version + len(events)

    def record_outcome(
        self, command_type: str, outcome: Outcome, fingerprint: str | None = None
    ) -> Outcome:
        self.writes.append(
            partial(
                FakeEventStore.record_outcome,
                command_type=command_type,
                outcome=outcome,
                fingerprint=fingerprint,
            )
        )
        return outcome

    def save_snapshot(self, snapshot: Snapshot) -> None:
        raise Regroup("snapshots come after")


def test_a_group_write_decides_as_command_by_command_does() -> None:
    store = GroupingStore()
    batch = [create("o1"), add("o1"), add("o2"), pay("o1")]

    outcomes = handler_over(store).handle_many(batch)

    assert [(o.status, o.version) for o in outcomes] == [
        ("accepted", 1),
        ("accepted", 2),
        ("rejected", None),
        ("accepted", 3),
    ]
    assert store.groups == 1 and store.load_streams_calls == 1
    assert [store.outcomes[o.command_id] for o in outcomes] == outcomes


def test_a_lost_group_is_forgotten_and_the_batch_decided_again_on_fresh_streams() -> None:
    store = GroupingStore()
    handler_over(store).handle(create("o1"))
    store.rival = lambda rival: rival.append("o1", 1, [item_added("o1", 2, item_id="rival")])
    conflicts: list[None] = []
    handler = CommandHandler(store, on_conflict=lambda: conflicts.append(None))

    [added, created] = handler.handle_many([add("o1"), create("o2")])

    assert (added.status, added.version) == ("accepted", 3)  # after the rival's v2
    assert (created.status, created.version) == ("accepted", 1)
    assert store.groups == 1 and store.load_streams_calls == 2
    assert [len(store.streams[order]) for order in ("o1", "o2")] == [3, 1]
    assert store.outcomes[added.command_id] == added and len(store.outcomes) == 3
    assert not conflicts  # the fresh read already has the rival's event: no race lost
