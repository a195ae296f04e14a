"""The event store contract: what every event store keeps, the fake included.

``EventStoreContract`` is an abstract suite (pytest does not collect it: its name does
not start with ``Test``). Each store runs it through a subclass that says how to get
the store and how to count what it holds:

- ``TestSqliteEventStore`` and ``TestPostgresEventStore`` in
  tests/integration/test_store_contract.py (beside the tests that need raw SQL);
- ``TestFakeEventStore`` in tests/unit/test_fake_event_store.py, so the unit tests'
  in-memory store is held to the same promises.

Every test here uses the store's public API only: append, load, load_stream,
latest_version, load_snapshot, save_snapshot, find_outcome and record_outcome, and the
``CommandHandler`` over them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Protocol

import pytest

from commands import CreateOrder, Outcome, PayOrder
from domain.errors import DuplicateCommand, VersionConflict
from domain.events import Event, EventMetadata, ItemAdded, OrderCreated, OrderPaid
from domain.handler import CommandHandler, load_order
from domain.order import Order, fold
from domain.ports import EventStore
from domain.snapshots import Snapshot
from tests.support.commands import ORDER
from tests.support.events import FIXED_TIME, created, item_added
from tests.support.ids import new_id
from tests.support.walkthrough import WALKTHROUGH, walkthrough_commands


class ContractStore(EventStore, Protocol):
    """The API the contract holds a store to: the domain's port and the reads around it."""

    def load(self, aggregate_id: str, after_version: int = 0) -> list[Event]: ...

    def latest_version(self, aggregate_id: str) -> int: ...

    def load_snapshot(self, aggregate_id: str) -> Snapshot | None: ...

    def find_outcome(self, command_id: str) -> Outcome | None: ...


Counts = Callable[[], Mapping[str, int]]
"""How many events, command log entries and snapshots the store holds now (keys
``events``, ``command_log``, ``snapshots``): compared before and after a refused write."""


def accepted(command_id: str, version: int, *event_types: str) -> Outcome:
    return Outcome(
        status="accepted",
        command_id=command_id,
        order_id=ORDER,
        version=version,
        events=event_types,
    )


class EventStoreContract:
    """The tests every event store passes. A subclass overrides both fixtures."""

    @pytest.fixture
    def store(self) -> ContractStore:
        """An empty store."""
        raise NotImplementedError("each store's subclass says how to open it")

    @pytest.fixture
    def stored_counts(self, store: ContractStore) -> Counts:
        """Counts what ``store`` holds (see ``Counts``)."""
        raise NotImplementedError("each store's subclass says how to count what it holds")

    # -- append and load -----------------------------------------------------------------

    def test_append_then_load_returns_the_same_events(self, store: ContractStore) -> None:
        metadata = EventMetadata(
            command_id=new_id(), correlation_id="corr-1", causation_id=new_id()
        )
        appended = [
            created(ORDER, metadata=metadata),
            item_added(ORDER, 2, item_id="apple", quantity=3, price="1.50", metadata=metadata),
            item_added(ORDER, 3, item_id="banana", quantity=2, price="0.75"),
        ]

        assert store.append(ORDER, 0, appended) == 3
        loaded = store.load(ORDER)

        assert loaded == appended  # every field: type, ids, version, payload, metadata, time
        for before, after in zip(appended, loaded, strict=True):
            assert type(after) is type(before)
            assert after.event_id == before.event_id
            assert after.data() == before.data()
            assert after.metadata == before.metadata
            assert after.timestamp == FIXED_TIME
            assert after.timestamp.utcoffset() == timedelta(0)
        assert loaded[1].metadata.to_dict() == {
            "command_id": metadata.command_id,
            "correlation_id": "corr-1",
            "causation_id": metadata.causation_id,
        }
        assert loaded[2].metadata == EventMetadata()
        assert isinstance(loaded[1], ItemAdded)
        assert loaded[1].price == Decimal("1.50")

    def test_a_timestamp_in_another_zone_is_stored_as_the_same_instant(
        self, store: ContractStore
    ) -> None:
        two_hours_east = timezone(timedelta(hours=2))
        noon_east = datetime(2024, 1, 1, 12, 0, tzinfo=two_hours_east)

        store.append(ORDER, 0, [created(ORDER, at=noon_east)])

        loaded = store.load(ORDER)[0].timestamp
        assert loaded == noon_east
        assert loaded.utcoffset() == timedelta(0)
        assert loaded.hour == 10

    def test_load_after_version_returns_only_newer_events(self, store: ContractStore) -> None:
        batch = [created(ORDER), *(item_added(ORDER, v, item_id=f"i{v}") for v in (2, 3, 4))]
        store.append(ORDER, 0, batch)

        assert [e.version for e in store.load(ORDER, after_version=2)] == [3, 4]
        assert store.load(ORDER, after_version=0) == batch
        assert store.load(ORDER, after_version=4) == []
        assert store.load(ORDER, after_version=99) == []
        assert store.load("no-such-order") == []

    def test_latest_version_follows_each_stream(self, store: ContractStore) -> None:
        assert store.latest_version(ORDER) == 0
        store.append(ORDER, 0, [created(ORDER)])
        store.append(ORDER, 1, [item_added(ORDER, 2), item_added(ORDER, 3)])
        store.append("order-002", 0, [created("order-002")])

        assert store.latest_version(ORDER) == 3
        assert store.latest_version("order-002") == 1
        assert store.latest_version("order-003") == 0

    def test_stale_expected_version_raises_version_conflict(
        self, store: ContractStore, stored_counts: Counts
    ) -> None:
        store.append(ORDER, 0, [created(ORDER), item_added(ORDER, 2)])
        before = stored_counts()

        with pytest.raises(VersionConflict) as conflict:
            store.append(ORDER, 1, [item_added(ORDER, 2, item_id="late")])

        assert conflict.value.stream == f"Order-{ORDER}"
        assert conflict.value.expected == 1
        assert conflict.value.actual == 2
        assert stored_counts() == before
        assert [e.version for e in store.load(ORDER)] == [1, 2]

    @pytest.mark.parametrize(("stream_length", "expected"), [(0, 1), (2, 3), (2, 7)])
    def test_expected_version_ahead_of_the_stream_raises_and_writes_nothing(
        self, store: ContractStore, stored_counts: Counts, stream_length: int, expected: int
    ) -> None:
        existing = [created(ORDER), item_added(ORDER, 2)][:stream_length]
        if existing:
            store.append(ORDER, 0, existing)
        before = stored_counts()
        command_id = new_id()

        with pytest.raises(VersionConflict) as conflict:
            store.append(
                ORDER,
                expected,
                [item_added(ORDER, expected + 1)],
                command_type="AddItem",
                outcome=accepted(command_id, expected + 1, "ItemAdded"),
            )

        assert (conflict.value.stream, conflict.value.expected, conflict.value.actual) == (
            f"Order-{ORDER}",
            expected,
            stream_length,
        )
        assert stored_counts() == before
        assert store.load(ORDER) == existing
        assert store.find_outcome(command_id) is None

    # -- idempotency: the command log ----------------------------------------------------

    def test_append_with_a_recorded_command_id_raises_duplicate_command(
        self, store: ContractStore, stored_counts: Counts
    ) -> None:
        command_id = new_id()
        first = accepted(command_id, 1, "OrderCreated")
        assert (
            store.append(ORDER, 0, [created(ORDER)], command_type="CreateOrder", outcome=first) == 1
        )
        before = stored_counts()
        stored_events = store.load(ORDER)

        again = accepted(command_id, 2, "ItemAdded")
        with pytest.raises(DuplicateCommand) as duplicate:
            store.append(ORDER, 1, [item_added(ORDER, 2)], command_type="AddItem", outcome=again)

        assert duplicate.value.command_id == command_id
        assert stored_counts() == before
        assert store.load(ORDER) == stored_events
        assert store.find_outcome(command_id) == first

    def test_duplicate_command_wins_over_a_version_conflict(
        self, store: ContractStore, stored_counts: Counts
    ) -> None:
        command_id = new_id()
        store.append(ORDER, 0, [created(ORDER)], outcome=accepted(command_id, 1, "OrderCreated"))
        before = stored_counts()

        # A redelivered command that would also be stale is reported as the duplicate it is.
        with pytest.raises(DuplicateCommand):
            store.append(
                ORDER, 0, [created(ORDER)], outcome=accepted(command_id, 1, "OrderCreated")
            )

        assert stored_counts() == before

    def test_record_outcome_twice_returns_the_first(
        self, store: ContractStore, stored_counts: Counts
    ) -> None:
        command_id = new_id()
        first = Outcome(
            status="rejected",
            command_id=command_id,
            order_id=ORDER,
            error="OrderNotFound",
            message=f"order {ORDER} does not exist",
        )
        second = Outcome(status="failed", command_id=command_id, order_id=ORDER, error="Boom")

        assert store.record_outcome("PayOrder", first) == first
        counts = stored_counts()
        assert store.record_outcome("PayOrder", second) == first
        assert store.find_outcome(command_id) == first
        assert stored_counts() == counts

    def test_record_outcome_after_an_accepted_append_returns_the_accepted_outcome(
        self, store: ContractStore
    ) -> None:
        command_id = new_id()
        first = accepted(command_id, 1, "OrderCreated")
        store.append(ORDER, 0, [created(ORDER)], command_type="CreateOrder", outcome=first)
        late = Outcome(status="rejected", command_id=command_id, order_id=ORDER, error="X")

        assert store.record_outcome("CreateOrder", late) == first

    @pytest.mark.parametrize(
        "outcome",
        [
            Outcome(
                status="accepted",
                command_id="8c5b3c1e-0f7e-4e0e-9d7e-2b7d9c6f1a01",
                order_id=ORDER,
                version=3,
                events=("ItemAdded", "ItemRemoved"),
            ),
            Outcome(
                status="rejected",
                command_id="8c5b3c1e-0f7e-4e0e-9d7e-2b7d9c6f1a02",
                order_id=ORDER,
                error="PriceMismatch",
                message="item apple is in order order-001 at 1.50, not 2.00 — ünïcödé ✓",
            ),
            Outcome(status="failed", command_id="8c5b3c1e-0f7e-4e0e-9d7e-2b7d9c6f1a03"),
        ],
        ids=["accepted", "rejected", "failed"],
    )
    def test_find_outcome_round_trip(self, store: ContractStore, outcome: Outcome) -> None:
        assert store.find_outcome(outcome.command_id) is None
        if outcome.accepted:
            store.append(ORDER, 0, [created(ORDER)], command_type="CreateOrder", outcome=outcome)
        else:
            store.record_outcome("AddItem", outcome)

        assert store.find_outcome(outcome.command_id) == outcome
        assert store.find_outcome(new_id()) is None

    # -- snapshots -----------------------------------------------------------------------

    def test_snapshot_save_and_load(self, store: ContractStore) -> None:
        assert store.load_snapshot(ORDER) is None
        state = {"customer_id": "customer-123", "status": "created", "lines": {}, "n": [1, 2]}
        store.save_snapshot(Snapshot(ORDER, 3, 1, state))

        assert store.load_snapshot(ORDER) == Snapshot(ORDER, 3, 1, state)
        assert store.load_snapshot("order-002") is None

    def test_a_snapshot_never_moves_backwards(self, store: ContractStore) -> None:
        store.save_snapshot(Snapshot(ORDER, 2, 1, {"at": 2}))
        store.save_snapshot(Snapshot(ORDER, 4, 1, {"at": 4}))
        store.save_snapshot(Snapshot(ORDER, 2, 1, {"at": "stale"}))
        store.save_snapshot(Snapshot(ORDER, 4, 1, {"at": "same version"}))

        assert store.load_snapshot(ORDER) == Snapshot(ORDER, 4, 1, {"at": 4})

        store.save_snapshot(Snapshot(ORDER, 6, 1, {"at": 6}))
        assert store.load_snapshot(ORDER) == Snapshot(ORDER, 6, 1, {"at": 6})

    @pytest.mark.parametrize(
        ("every", "expected_snapshot_versions"),
        [(2, [None, 2, 2, 4]), (3, [None, None, 3, 3]), (1, [1, 2, 3, 4])],
    )
    def test_handler_takes_a_snapshot_every_n_versions(
        self, store: ContractStore, every: int, expected_snapshot_versions: list[int | None]
    ) -> None:
        handler = CommandHandler(store, snapshot_every=every)
        seen = []
        for command in walkthrough_commands():
            assert handler.handle(command).accepted
            snapshot = store.load_snapshot(ORDER)
            seen.append(None if snapshot is None else snapshot.version)

        assert seen == expected_snapshot_versions
        replayed = fold(Order(ORDER), store.load(ORDER))
        assert load_order(store, ORDER) == replayed
        assert str(load_order(store, ORDER)) == WALKTHROUGH

    # -- the handler over the store ------------------------------------------------------

    def test_walkthrough(self, store: ContractStore) -> None:
        handler = CommandHandler(store)
        outcomes = [handler.handle(command) for command in walkthrough_commands()]

        assert [o.status for o in outcomes] == ["accepted"] * 4
        assert [o.version for o in outcomes] == [1, 2, 3, 4]
        assert str(load_order(store, ORDER)) == WALKTHROUGH
        loaded = store.load(ORDER)
        assert [type(e) for e in loaded] == [OrderCreated, ItemAdded, ItemAdded, OrderPaid]
        for event in loaded:
            assert event.timestamp.tzinfo is not None
            assert event.timestamp.utcoffset() == timedelta(0)

    def test_handling_the_same_commands_again_writes_nothing(
        self, store: ContractStore, stored_counts: Counts
    ) -> None:
        commands = walkthrough_commands()
        first = [CommandHandler(store).handle(command) for command in commands]
        before = stored_counts()
        stored = store.load(ORDER)

        again = [CommandHandler(store).handle(command) for command in commands]

        assert again == first
        assert stored_counts() == before
        assert before["events"] == 4
        assert before["command_log"] == 4
        assert store.load(ORDER) == stored
        assert str(load_order(store, ORDER)) == WALKTHROUGH

    def test_a_rejected_command_is_recorded_and_not_decided_again(
        self, store: ContractStore, stored_counts: Counts
    ) -> None:
        handler = CommandHandler(store)
        pay = PayOrder(ORDER, payment_method="credit_card")
        rejected = handler.handle(pay)
        assert rejected.status == "rejected"
        assert rejected.error == "OrderNotFound"

        for command in walkthrough_commands()[:2]:
            handler.handle(command)
        before = stored_counts()

        # The order could be paid now, but this command id already has its answer.
        assert handler.handle(pay) == rejected
        assert stored_counts() == before

    def test_the_fingerprint_is_kept_with_the_outcome_and_read_with_the_stream(
        self, store: ContractStore
    ) -> None:
        appended, rejected = new_id(), new_id()
        store.append(
            ORDER,
            0,
            [created(ORDER)],
            command_type="CreateOrder",
            outcome=accepted(appended, 1, "OrderCreated"),
            fingerprint="a" * 64,
        )
        store.record_outcome(
            "PayOrder",
            Outcome(status="rejected", command_id=rejected, order_id=ORDER, error="X"),
            "b" * 64,
        )

        assert store.load_stream(
            ORDER, snapshot_schema=1, command_id=appended
        ).recorded_fingerprint == ("a" * 64)
        assert store.load_stream(
            ORDER, snapshot_schema=1, command_id=rejected
        ).recorded_fingerprint == ("b" * 64)
        assert (
            store.load_stream(ORDER, snapshot_schema=1, command_id=new_id()).recorded_fingerprint
            is None
        )

    def test_a_command_id_reused_for_another_command_is_refused_and_writes_nothing(
        self, store: ContractStore, stored_counts: Counts
    ) -> None:
        handler = CommandHandler(store)
        commands = walkthrough_commands()
        for command in commands:
            assert handler.handle(command).accepted
        paid = commands[-1]
        before = stored_counts()

        reused = handler.handle(CreateOrder("order-010", "customer-9", command_id=paid.command_id))

        assert (reused.status, reused.error) == ("rejected", "CommandIdReused")
        assert stored_counts() == before
        assert store.load("order-010") == []
        assert store.find_outcome(paid.command_id) == handler.handle(paid)  # still the first's

    # -- batches: many streams read at once, many writes in one transaction --------------

    def test_load_streams_reads_as_load_stream_does_for_each_pair(
        self, store: ContractStore
    ) -> None:
        command_id = new_id()
        store.append(
            ORDER,
            0,
            [created(ORDER), item_added(ORDER, 2)],
            command_type="CreateOrder",
            outcome=accepted(command_id, 2, "OrderCreated", "ItemAdded"),
            fingerprint="f" * 64,
        )
        store.append("order-002", 0, [created("order-002")])
        store.save_snapshot(Snapshot("order-002", 1, 1, {"at": 1}))
        wanted: list[tuple[str, str | None]] = [
            ("order-002", None),
            (ORDER, command_id),
            (ORDER, new_id()),
            ("order-003", command_id),
            (ORDER, None),
        ]

        loaded = store.load_streams(wanted, snapshot_schema=1)

        one_by_one = [
            store.load_stream(aggregate_id, snapshot_schema=1, command_id=command)
            for aggregate_id, command in wanted
        ]
        assert loaded == one_by_one
        assert loaded[1].recorded == accepted(command_id, 2, "OrderCreated", "ItemAdded")
        assert loaded[1].recorded_fingerprint == "f" * 64
        assert loaded[0].snapshot is not None and loaded[0].events == []
        assert store.load_streams([], snapshot_schema=1) == []

    def test_a_batch_commits_all_its_writes_and_reads_its_own(self, store: ContractStore) -> None:
        first, second, rejected = new_id(), new_id(), new_id()
        refusal = Outcome(status="rejected", command_id=rejected, order_id=ORDER, error="X")

        with store.write_batch() as batch:
            assert (
                batch.append(ORDER, 0, [created(ORDER)], outcome=accepted(first, 1, "OrderCreated"))
                == 1
            )
            assert (
                batch.append(
                    ORDER, 1, [item_added(ORDER, 2)], outcome=accepted(second, 2, "ItemAdded")
                )
                == 2
            )
            assert batch.record_outcome("PayOrder", refusal, "r" * 64) == refusal
            batch.save_snapshot(Snapshot(ORDER, 2, 1, {"at": 2}))
            seen = batch.load_stream(ORDER, snapshot_schema=1, command_id=second)
            assert seen.recorded == accepted(second, 2, "ItemAdded")
            assert seen.snapshot == Snapshot(ORDER, 2, 1, {"at": 2})

        assert [e.version for e in store.load(ORDER)] == [1, 2]
        assert store.find_outcome(first) == accepted(first, 1, "OrderCreated")
        assert store.find_outcome(rejected) == refusal
        assert store.load_snapshot(ORDER) == Snapshot(ORDER, 2, 1, {"at": 2})

    def test_a_batch_that_raises_writes_nothing(
        self, store: ContractStore, stored_counts: Counts
    ) -> None:
        store.append(ORDER, 0, [created(ORDER)])
        before = stored_counts()
        command_id = new_id()

        with pytest.raises(RuntimeError, match="mid-batch"), store.write_batch() as batch:
            batch.append(
                ORDER, 1, [item_added(ORDER, 2)], outcome=accepted(command_id, 2, "ItemAdded")
            )
            batch.save_snapshot(Snapshot(ORDER, 2, 1, {"at": 2}))
            raise RuntimeError("mid-batch")

        assert stored_counts() == before
        assert store.find_outcome(command_id) is None
        assert [e.version for e in store.load(ORDER)] == [1]

    def test_a_refused_write_in_a_batch_touches_only_itself(
        self, store: ContractStore, stored_counts: Counts
    ) -> None:
        known = new_id()
        store.append(ORDER, 0, [created(ORDER)], outcome=accepted(known, 1, "OrderCreated"))
        before = stored_counts()
        kept, stale, again, later = new_id(), new_id(), new_id(), new_id()
        earlier = Outcome(status="rejected", command_id=known, order_id=ORDER, error="Late")

        with store.write_batch() as batch:
            batch.append(ORDER, 1, [item_added(ORDER, 2)], outcome=accepted(kept, 2, "ItemAdded"))
            with pytest.raises(VersionConflict) as conflict:
                batch.append(
                    ORDER, 1, [item_added(ORDER, 2, item_id="x")], outcome=accepted(stale, 2)
                )
            with pytest.raises(DuplicateCommand):
                batch.append(ORDER, 2, [item_added(ORDER, 3)], outcome=accepted(known, 3))
            with pytest.raises(DuplicateCommand):  # twice in one batch: the second is a duplicate
                batch.append(ORDER, 2, [item_added(ORDER, 3)], outcome=accepted(kept, 3))
            assert batch.record_outcome("PayOrder", earlier) == accepted(known, 1, "OrderCreated")
            batch.append("order-002", 0, [created("order-002")], outcome=accepted(later, 1))
            assert batch.record_outcome("PayOrder", Outcome(status="rejected", command_id=again))

        assert (conflict.value.expected, conflict.value.actual) == (1, 2)
        assert [e.version for e in store.load(ORDER)] == [1, 2]
        assert [e.version for e in store.load("order-002")] == [1]
        assert store.find_outcome(stale) is None
        assert store.find_outcome(kept) == accepted(kept, 2, "ItemAdded")
        assert store.find_outcome(known) == accepted(known, 1, "OrderCreated")
        counts = stored_counts()
        assert counts["events"] == before["events"] + 2
        assert counts["command_log"] == before["command_log"] + 3

    def test_handle_many_decides_in_order_and_records_each_outcome(
        self, store: ContractStore, stored_counts: Counts
    ) -> None:
        handler = CommandHandler(store, snapshot_every=2)
        commands = walkthrough_commands()
        pay_again = PayOrder(ORDER, payment_method="cash")
        elsewhere = PayOrder("order-404", payment_method="cash")
        batch = [*commands, pay_again, elsewhere, commands[1]]  # the last: a redelivery

        outcomes = handler.handle_many(batch)

        assert [(o.status, o.version, o.error) for o in outcomes] == [
            ("accepted", 1, None),
            ("accepted", 2, None),
            ("accepted", 3, None),
            ("accepted", 4, None),
            ("rejected", None, "OrderAlreadyPaid"),
            ("rejected", None, "OrderNotFound"),
            ("accepted", 2, None),
        ]
        for command, outcome in zip(batch, outcomes, strict=True):
            assert store.find_outcome(command.command_id) == outcome
        assert str(load_order(store, ORDER)) == WALKTHROUGH
        snapshot = store.load_snapshot(ORDER)
        assert snapshot is not None and snapshot.version == 4
        before = stored_counts()
        assert handler.handle_many(batch) == outcomes  # all redelivered: answered, nothing written
        assert stored_counts() == before
