"""The global log reader: every event once, in commit order, never skipping a slow commit."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, field
from itertools import pairwise

import pytest
from sqlalchemy import Engine, text

import store.postgres.global_log as global_log
from domain.events import Event
from store import (
    Checkpoint,
    GlobalLog,
    RecordedEvent,
    SqlEventStore,
    open_event_store,
    open_global_log,
)
from store.codec import event_to_row
from store.schema import events
from tests.support.events import created, item_added
from tests.support.waiting import eventually

# -- helpers ------------------------------------------------------------------------------


def append_history(store: SqlEventStore) -> list[str]:
    """Appends interleaved across three orders, some as batches; ids in commit order."""
    committed: list[str] = []

    def append(order_id: str, expected: int, batch: list[Event]) -> None:
        store.append(order_id, expected, batch)
        committed.extend(event.event_id for event in batch)

    append("order-a", 0, [created("order-a")])
    append("order-b", 0, [created("order-b"), item_added("order-b", 2, item_id="pear")])
    append("order-a", 1, [item_added("order-a", 2, item_id="apple")])
    append("order-c", 0, [created("order-c")])
    append("order-a", 2, [item_added("order-a", 3, item_id="fig")])
    append("order-b", 2, [item_added("order-b", v, item_id=f"b{v}") for v in (3, 4, 5)])
    append("order-c", 1, [item_added("order-c", 2, item_id="kiwi")])
    append("order-a", 3, [item_added("order-a", 4, item_id="plum")])
    return committed


def whole_pass(
    engine: Engine, reader: GlobalLog, after: Checkpoint, size: int
) -> list[RecordedEvent]:
    """What a rebuild reads: ``batches_in`` from ``after`` to the end, sizes checked."""
    with (
        engine.connect() as conn,
        conn.begin(),
        closing(reader.batches_in(conn, after, size)) as batches,
    ):
        read = list(batches)
    assert all(1 <= len(batch) <= size for batch in read)
    assert all(len(batch) == size for batch in read[:-1])
    return [recorded for batch in read for recorded in batch]


def read_everything(reader: GlobalLog, count: int) -> list[RecordedEvent]:
    return eventually(lambda: reader.read(Checkpoint(), limit=10_000), lambda r: len(r) >= count)


def ids(recorded: list[RecordedEvent]) -> list[str]:
    return [r.event.event_id for r in recorded]


def assert_strictly_increasing(recorded: list[RecordedEvent]) -> None:
    checkpoints = [r.checkpoint for r in recorded]
    assert all(a < b for a, b in pairwise(checkpoints)), checkpoints


@dataclass
class Subscriber:
    """What a projection does: read after its checkpoint, then move the checkpoint on."""

    reader: GlobalLog
    after: Checkpoint = field(default_factory=Checkpoint)
    limit: int = 500
    delivered: list[RecordedEvent] = field(default_factory=list)

    def poll(self) -> list[RecordedEvent]:
        batch = self.reader.read(self.after, self.limit)
        if batch:
            assert all(self.after < r.checkpoint for r in batch)
            self.after = batch[-1].checkpoint
            self.delivered.extend(batch)
        return batch

    def poll_until(self, done: Callable[[list[str]], bool], timeout: float) -> list[str]:
        deadline = time.monotonic() + timeout
        while not done(ids(self.delivered)) and time.monotonic() < deadline:
            if not self.poll():
                time.sleep(0.05)
        return ids(self.delivered)


# -- both backends ------------------------------------------------------------------------


def test_reads_every_event_in_commit_order(engine: Engine) -> None:
    committed = append_history(open_event_store(engine))
    reader = open_global_log(engine)

    recorded = read_everything(reader, len(committed))

    assert ids(recorded) == committed
    assert_strictly_increasing(recorded)
    assert reader.read(recorded[-1].checkpoint) == []
    if engine.dialect.name == "sqlite":
        assert all(r.checkpoint.transaction_id == 0 for r in recorded)
    else:
        assert all(r.checkpoint.transaction_id > 0 for r in recorded)


def test_the_recorded_events_equal_what_the_store_loads(engine: Engine) -> None:
    store = open_event_store(engine)
    committed = append_history(store)

    recorded = read_everything(open_global_log(engine), len(committed))

    by_id = {r.event.event_id: r.event for r in recorded}
    for order_id in ("order-a", "order-b", "order-c"):
        for event in store.load(order_id):
            assert by_id[event.event_id] == event


@pytest.mark.parametrize("limit", [1, 3, 4, 100])
def test_reading_in_batches_repeats_and_skips_nothing(engine: Engine, limit: int) -> None:
    committed = append_history(open_event_store(engine))
    subscriber = Subscriber(open_global_log(engine), limit=limit)

    sizes = []
    deadline = time.monotonic() + 30
    while len(subscriber.delivered) < len(committed) and time.monotonic() < deadline:
        batch = subscriber.poll()
        if batch:
            sizes.append(len(batch))
        else:
            time.sleep(0.05)

    assert ids(subscriber.delivered) == committed
    assert all(size <= limit for size in sizes)
    if engine.dialect.name == "sqlite":
        assert sizes == [min(limit, len(committed) - n) for n in range(0, len(committed), limit)]
    assert_strictly_increasing(subscriber.delivered)
    assert subscriber.poll() == []


@pytest.mark.parametrize("size", [1, 3, 100])
def test_a_whole_pass_in_batches_reads_what_the_reader_reads(engine: Engine, size: int) -> None:
    committed = append_history(open_event_store(engine))
    reader = open_global_log(engine)
    everything = read_everything(reader, len(committed))

    passed = whole_pass(engine, reader, Checkpoint(), size)
    rest = whole_pass(engine, reader, everything[3].checkpoint, size)

    assert ids(passed) == committed
    assert [r.checkpoint for r in passed] == [r.checkpoint for r in everything]
    assert ids(rest) == committed[4:]
    assert whole_pass(engine, reader, everything[-1].checkpoint, size) == []


def test_events_appended_later_are_read_after_the_checkpoint(engine: Engine) -> None:
    store = open_event_store(engine)
    committed = append_history(store)
    subscriber = Subscriber(open_global_log(engine))
    subscriber.poll_until(lambda seen: len(seen) >= len(committed), timeout=30)
    assert ids(subscriber.delivered) == committed

    later = [item_added("order-c", 3, item_id="fig"), item_added("order-c", 4, item_id="date")]
    store.append("order-c", 2, later)
    store.append("order-d", 0, [created("order-d")])
    expected = [*committed, later[0].event_id, later[1].event_id]

    seen = subscriber.poll_until(lambda seen: len(seen) >= len(committed) + 3, timeout=30)

    assert seen[: len(expected)] == expected
    assert len(seen) == len(committed) + 3
    assert_strictly_increasing(subscriber.delivered)


def test_a_batch_appended_in_one_transaction_is_returned_contiguously(engine: Engine) -> None:
    store = open_event_store(engine)
    store.append("order-a", 0, [created("order-a")])
    store.append("order-b", 0, [created("order-b")])
    batch = [item_added("order-a", v, item_id=f"a{v}") for v in (2, 3, 4, 5)]
    store.append("order-a", 1, batch)
    store.append("order-b", 1, [item_added("order-b", 2)])

    recorded = read_everything(open_global_log(engine), 7)

    batch_ids = [event.event_id for event in batch]
    start = ids(recorded).index(batch_ids[0])
    assert ids(recorded)[start : start + len(batch)] == batch_ids
    assert [r.event.version for r in recorded[start : start + len(batch)]] == [2, 3, 4, 5]


# -- PostgreSQL: a transaction that commits late is never skipped -------------------------


@dataclass
class Interleaving:
    old: str
    a: str
    b: str
    a_before_b_in_xid_order: bool
    seen_while_a_open: list[str]
    full_read_while_a_open: list[str]
    full_pass_while_a_open: list[str]
    delivered: list[str]


def interleave(pg: Engine, reader: GlobalLog, settle: float) -> Interleaving:
    """A inserts and stays open; B appends and commits; a subscriber reads; A commits."""
    store = open_event_store(pg)
    old = created("order-old")
    store.append("order-old", 0, [old])
    subscriber = Subscriber(reader)
    assert subscriber.poll_until(lambda seen: old.event_id in seen, timeout=30) == [old.event_id]

    event_a = created("order-a")
    event_b = created("order-b")
    conn_a = pg.connect()
    try:
        transaction_a = conn_a.begin()
        conn_a.execute(events.insert(), event_to_row(event_a))
        xid_a = int(conn_a.execute(text("SELECT pg_current_xact_id()::text")).scalar_one())

        store.append("order-b", 0, [event_b])  # B commits while A is still open
        with pg.connect() as probe:
            xid_b = int(
                probe.execute(
                    text("SELECT transaction_id::text FROM events WHERE event_id = :id"),
                    {"id": event_b.event_id},
                ).scalar_one()
            )

        seen_while_open = ids(subscriber.poll())
        full_read_while_open = ids(reader.read(Checkpoint()))
        full_pass_while_open = ids(whole_pass(pg, reader, Checkpoint(), size=1))
        transaction_a.commit()
    finally:
        conn_a.close()

    expected = {event_a.event_id, event_b.event_id}
    subscriber.poll_until(lambda seen: expected <= set(seen), timeout=settle)
    return Interleaving(
        old=old.event_id,
        a=event_a.event_id,
        b=event_b.event_id,
        a_before_b_in_xid_order=xid_a < xid_b,
        seen_while_a_open=seen_while_open,
        full_read_while_a_open=full_read_while_open,
        full_pass_while_a_open=full_pass_while_open,
        delivered=ids(subscriber.delivered),
    )


def assert_gap_free(run: Interleaving) -> None:
    assert run.a_before_b_in_xid_order
    # While A is open nothing newer than A may be handed out: B would pass A's place.
    assert run.seen_while_a_open == []
    assert run.full_read_while_a_open == [run.old]
    assert run.full_pass_while_a_open == [run.old]
    # Once A commits, both arrive, A first, and nothing was skipped or repeated.
    assert run.delivered == [run.old, run.a, run.b]


def test_a_transaction_open_across_a_later_commit_is_not_skipped(pg: Engine) -> None:
    assert_gap_free(interleave(pg, open_global_log(pg), settle=30))


def unguarded_query() -> str:
    guarded = global_log._GAP_FREE_AFTER
    kept = [line for line in guarded.splitlines() if "pg_snapshot_xmin" not in line]
    unguarded = "\n".join(kept)
    assert unguarded != guarded, "the xmin guard is no longer where this test expects it"
    return unguarded


def test_without_the_xmin_guard_the_late_commit_would_be_skipped(
    pg: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Proof that the test above guards the guard: the same run on a reader whose query
    lacks ``transaction_id < pg_snapshot_xmin(...)`` hands B out early and loses A."""
    monkeypatch.setattr(global_log, "_GAP_FREE_AFTER", unguarded_query())

    run = interleave(pg, open_global_log(pg), settle=1)

    assert run.seen_while_a_open == [run.b]
    assert run.full_pass_while_a_open == [run.old, run.b]
    assert run.delivered == [run.old, run.b]  # A is skipped for good
    assert run.a in ids(open_global_log(pg).read(Checkpoint()))  # ... though it is there
    with pytest.raises(AssertionError):
        assert_gap_free(run)


def test_interleaved_transactions_each_come_out_contiguous(pg: Engine) -> None:
    """Positions interleave (A1 A2 B1 B2 B3 A3), the global log does not."""
    store = open_event_store(pg)
    batch_a = [created("order-a"), item_added("order-a", 2), item_added("order-a", 3)]
    batch_b = [created("order-b"), item_added("order-b", 2), item_added("order-b", 3)]
    conn_a = pg.connect()
    try:
        with conn_a.begin():
            conn_a.execute(events.insert(), [event_to_row(e) for e in batch_a[:2]])
            store.append("order-b", 0, batch_b)
            conn_a.execute(events.insert(), event_to_row(batch_a[2]))
    finally:
        conn_a.close()

    recorded = read_everything(open_global_log(pg), 6)

    assert ids(recorded) == [e.event_id for e in (*batch_a, *batch_b)]
    assert_strictly_increasing(recorded)
    positions = [r.checkpoint.position for r in recorded]
    assert positions != sorted(positions)  # commit order is not position order here
    assert len({r.checkpoint.transaction_id for r in recorded[:3]}) == 1
    assert len({r.checkpoint.transaction_id for r in recorded[3:]}) == 1


def test_transaction_ids_are_ordered_as_numbers_not_as_text(pg: Engine) -> None:
    """Regression: the reader returned the id as text under the column's own name, and
    ORDER BY took the text alias, so transaction 10 sorted before 9 and a checkpoint at
    9 handed transaction 10's event out a second time."""
    first, second = created("order-9"), created("order-10")
    with pg.begin() as conn:
        for transaction_id, event in ((9, first), (10, second)):
            row = {**event_to_row(event), "transaction_id": transaction_id}
            conn.execute(
                text(
                    "INSERT INTO events (event_id, aggregate_type, aggregate_id, version, "
                    "event_type, schema_version, data, metadata, recorded_at, transaction_id) "
                    "VALUES (:event_id, :aggregate_type, :aggregate_id, :version, :event_type, "
                    ":schema_version, CAST(:data AS jsonb), CAST(:metadata AS jsonb), "
                    ":recorded_at, CAST(:transaction_id AS xid8))"
                ),
                {
                    **row,
                    "data": json.dumps(row["data"]),
                    "metadata": json.dumps(row["metadata"]),
                    "transaction_id": str(transaction_id),
                },
            )
    reader = open_global_log(pg)

    everything = reader.read(Checkpoint())
    after_nine = reader.read(everything[0].checkpoint)

    assert [r.checkpoint.transaction_id for r in everything] == [9, 10]
    assert [r.event_id for r in after_nine] == [second.event_id]
    with pg.connect() as conn:
        assert reader.head(conn).transaction_id == 10


def test_asking_whether_rows_are_held_back_reads_the_index_not_the_log(pg: Engine) -> None:
    """Regression: asked as ``EXISTS (...)``, the planner scanned the table from its
    start, expecting matches spread through it, while the rows after a checkpoint are
    all at its end: 12 ms at 120,000 events, on every caught-up run of every projection."""
    with pg.begin() as conn:
        conn.execute(events.insert(), [event_to_row(created(f"o-{n}")) for n in range(5_000)])
    with pg.connect() as conn:
        head = open_global_log(pg).head(conn)
        query = text("EXPLAIN " + str(global_log._ANY_AFTER))
        plan = "\n".join(conn.execute(query, global_log._params(head)).scalars())

    assert "Index" in plan, plan
    assert "Seq Scan" not in plan, plan
