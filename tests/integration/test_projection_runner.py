"""The projection runner against real databases: catching up, idempotent wake-ups,
rebuild, verify, parking a poison event, and never skipping a late commit."""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import (
    Column,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    delete,
    event,
    inspect,
    select,
    update,
)

import store.postgres.global_log as global_log
from bootstrap import order_history
from domain.events import Event, ItemAdded
from domain.order import Order
from readmodels.checkpoints import hold_lock, release_lock, save_state
from readmodels.maintenance import Difference, RebuildFailed, rebuild, verify
from readmodels.projections import PROJECTIONS
from readmodels.projections.base import Changes, Key, Projection, Rows
from readmodels.runner import UnknownProjection
from readmodels.tables import (
    customer_stats,
    order_summary,
    parked_events,
    product_sales,
    projection_checkpoints,
)
from store.backend import WRITE
from store.codec import event_to_row
from store.log import Checkpoint
from store.schema import events
from tests.support.commands import add, cancel, create, pay, remove
from tests.support.events import created
from tests.support.readmodels import (
    PHASES,
    System,
    run_phases,
    snapshot_checkpoints,
    snapshot_tables,
)
from tests.support.store import raw_event_row


def verify_all(system: System) -> list[Difference]:
    return verify(
        system.engine, system.reader, order_history(system.store), system.projections.values()
    )


def summary_ids(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return set(conn.execute(select(order_summary.c.order_id)).scalars())


# -- (a) catching up ----------------------------------------------------------------------


def test_run_all_brings_every_model_up_to_date_and_verify_agrees(engine: Engine) -> None:
    system = System(engine)
    for phase in PHASES:
        system.send(*phase)

    results = system.catch_up()

    assert {r.projection for r in results} == set(PROJECTIONS)
    assert all(r.state == "caught_up" for r in results)
    report = system.status()
    with engine.connect() as conn:
        head = system.reader.head(conn)
    for name, entry in report.items():
        assert (entry.lag_events, entry.stuck, entry.parked, entry.error) == (0, False, 0, None)
        assert entry.checkpoint == head, name
        assert entry.head == head
    assert verify_all(system) == []
    assert summary_ids(engine) == {f"o{n}" for n in range(1, 8)}
    with engine.connect() as conn:
        alice = conn.execute(
            select(customer_stats).where(customer_stats.c.customer_id == "alice")
        ).one()
    assert (alice.orders_created, alice.orders_paid, alice.orders_cancelled) == (2, 1, 1)
    assert alice.lifetime_value == Decimal("6.00")


def test_each_run_applies_only_what_is_new(engine: Engine) -> None:
    system = System(engine)
    system.send(*PHASES[0])
    first = {r.projection: r.applied for r in system.catch_up()}
    system.send(*PHASES[1])
    second = {r.projection: r.applied for r in system.catch_up()}

    assert sum(first.values()) > 0
    # A run applies (reads past) every new event, whether or not it changes a row.
    new_events = sum(len(o.events) for o in system.send(*PHASES[2]))
    third = {r.projection: r.applied for r in system.catch_up()}
    assert set(third.values()) == {new_events}
    assert set(second.values()) == {len(PHASES[1])}
    assert {r.applied for r in system.runner.run_all()} == {0}
    assert verify_all(system) == []


def small_batches_end_where_one_big_batch_does(engine: Engine) -> None:
    system = System(engine, batch_size=2)
    run_phases(system)
    assert [s.error for s in system.status().values() if s.stuck] == []
    small = snapshot_tables(engine)
    small_checkpoints = snapshot_checkpoints(engine, with_time=False)

    for name in PROJECTIONS:
        rebuild(engine, system.reader, order_history(system.store), PROJECTIONS[name])

    assert snapshot_tables(engine) == small
    assert snapshot_checkpoints(engine, with_time=False) == small_checkpoints


def test_small_batches_end_where_one_big_batch_does_on_postgresql(pg: Engine) -> None:
    small_batches_end_where_one_big_batch_does(pg)


def test_small_batches_end_where_one_big_batch_does_on_sqlite(sqlite: Engine) -> None:
    """A batch boundary between a customer's two orders is enough to trip the bug."""
    small_batches_end_where_one_big_batch_does(sqlite)


# -- (b) duplicate and out-of-order wake-ups ----------------------------------------------


def test_repeated_wake_ups_change_nothing(engine: Engine) -> None:
    system = System(engine)
    run_phases(system)
    tables, checkpoints = snapshot_tables(engine), snapshot_checkpoints(engine)

    for _ in range(3):
        assert {r.applied for r in system.runner.run_all()} == {0}
    for _ in range(2):  # late wake-ups reaching other workers, with cold caches
        assert {r.applied for r in system.new_runner().run_all()} == {0}
    for name in reversed(system.runner.names):  # in any order
        assert system.runner.run(name).applied == 0

    assert snapshot_tables(engine) == tables
    assert snapshot_checkpoints(engine) == checkpoints  # not even rewritten


def run_in_threads(count: int, target: Callable[[int], None]) -> None:
    errors: list[BaseException] = []
    barrier = threading.Barrier(count)

    def body(index: int) -> None:
        try:
            barrier.wait(timeout=10)
            target(index)
        except BaseException as error:  # reported below, in the test's thread
            errors.append(error)

    threads = [threading.Thread(target=body, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []


def test_concurrent_wake_ups_project_everything_exactly_once(engine: Engine) -> None:
    reference = System(engine)
    for phase in PHASES:
        reference.send(*phase)
    # Small batches make the runs overlap more.
    batch = 3
    runners = [reference.new_runner(batch_size=batch) for _ in range(6)]
    states: list[str] = []

    def wake(index: int) -> None:
        for _ in range(5):
            states.extend(result.state for result in runners[index].run_all())

    run_in_threads(len(runners), wake)
    reference.catch_up()  # whatever a busy runner left for later
    tables, checkpoints = snapshot_tables(engine), snapshot_checkpoints(engine)

    assert "stuck" not in states
    if engine.dialect.name == "postgresql":
        # The advisory lock, not luck: overlapping runs of a projection step aside.
        assert set(states) <= {"caught_up", "busy"}
    assert verify_all(reference) == []
    run_in_threads(4, lambda index: runners[index].run_all() and None)
    assert snapshot_tables(engine) == tables
    assert snapshot_checkpoints(engine) == checkpoints


def test_wake_ups_racing_new_commands_leave_a_consistent_model(pg: Engine) -> None:
    """Runs overlapping commits: every run sees a prefix of the log and moves on from it."""
    system = System(pg)
    stop = threading.Event()

    def commands(index: int) -> None:
        if index == 0:
            try:
                for phase in PHASES:
                    system.send(*phase)
            finally:
                stop.set()
        else:
            runner = system.new_runner(batch_size=2)
            while not stop.is_set():
                runner.run_all()

    run_in_threads(4, commands)
    system.catch_up()

    assert verify_all(system) == []
    assert all(s.lag_events == 0 and not s.stuck for s in system.status().values())
    assert summary_ids(pg) == {f"o{n}" for n in range(1, 8)}


# -- (c) rebuild --------------------------------------------------------------------------


def test_rebuild_equals_incremental(engine: Engine) -> None:
    system = System(engine)
    run_phases(system, runs_between=2)
    incremental = snapshot_tables(engine)
    checkpoints = snapshot_checkpoints(engine, with_time=False)
    with engine.connect() as conn:
        head = system.reader.head(conn)
    total = len(log_of(system))

    for name, projection in PROJECTIONS.items():
        seen: list[int] = []
        at = rebuild(engine, system.reader, order_history(system.store), projection, seen.append)
        assert at == head, name
        assert sum(seen) == total  # progress: every event of the log, once

    assert snapshot_tables(engine) == incremental
    assert snapshot_checkpoints(engine, with_time=False) == checkpoints
    assert verify_all(system) == []
    assert not [name for name in inspect(engine).get_table_names() if "__rebuild" in name]
    assert gc.isenabled()


def test_rebuild_replaces_a_damaged_table_and_continues_incrementally(engine: Engine) -> None:
    system = System(engine)
    system.send(*PHASES[0], *PHASES[1])
    system.catch_up()
    expected = snapshot_tables(engine)
    with engine.begin() as conn:
        conn.execute(delete(order_summary).where(order_summary.c.order_id == "o1"))
        conn.execute(update(product_sales).values(units_sold=0))
    assert verify_all(system) != []

    for name in ("order_summary", "product_sales"):
        rebuild(engine, system.reader, order_history(system.store), PROJECTIONS[name])

    assert snapshot_tables(engine) == expected
    system.send(*PHASES[2])
    system.catch_up()
    assert verify_all(system) == []


def test_rebuilding_a_stuck_projection_clears_it(engine: Engine) -> None:
    system = System(engine)
    system.send(*(command for phase in PHASES for command in phase))
    system.catch_up()
    expected = snapshot_tables(engine)
    with engine.connect() as conn:
        some_event = system.reader.read_in(conn, Checkpoint(), 1)[0]
    with engine.execution_options(**WRITE).begin() as conn:
        save_state(conn, "customer_stats", Checkpoint(), stuck=True, error="RuntimeError: boom")
        conn.execute(
            parked_events.insert().values(
                projection="customer_stats",
                event_id=some_event.event_id,
                transaction_id=some_event.checkpoint.transaction_id,
                position=some_event.checkpoint.position,
                event_type=some_event.event_type,
                error="RuntimeError: boom",
                parked_at=some_event.event.timestamp,
            )
        )
        conn.execute(delete(customer_stats))
    stuck = system.status()["customer_stats"]
    assert (stuck.stuck, stuck.parked, stuck.error) == (True, 1, "RuntimeError: boom")
    assert system.runner.run("customer_stats").state == "stuck"

    rebuild(engine, system.reader, order_history(system.store), PROJECTIONS["customer_stats"])

    cleared = system.status()["customer_stats"]
    assert (cleared.stuck, cleared.parked, cleared.error, cleared.lag_events) == (
        False,
        0,
        None,
        0,
    )
    assert system.runner.run("customer_stats").state == "caught_up"
    assert snapshot_tables(engine) == expected


# -- (d) verify ---------------------------------------------------------------------------


def test_verify_names_every_tampered_row(engine: Engine) -> None:
    system = System(engine)
    system.send(*(command for phase in PHASES for command in phase))
    system.catch_up()
    assert verify_all(system) == []

    with engine.begin() as conn:
        conn.execute(
            update(order_summary)
            .where(order_summary.c.order_id == "o2")
            .values(total=Decimal("5.00"))
        )
        conn.execute(delete(product_sales).where(product_sales.c.item_id == "pear"))
        conn.execute(
            customer_stats.insert().values(
                customer_id="ghost",
                orders_created=1,
                orders_paid=1,
                orders_cancelled=0,
                lifetime_value=Decimal("1.00"),
                last_order_at=system.clock.now,
            )
        )
        conn.execute(update(order_summary).where(order_summary.c.order_id == "o5").values(units=11))
        conn.execute(
            update(order_summary)
            .where(order_summary.c.order_id == "o1")
            .values(paid_at=system.clock.now)
        )

    differences = verify_all(system)

    assert [(d.projection, d.key, d.problem.split(" ")[0]) for d in differences] == [
        ("order_summary", ("o1",), "paid_at"),
        ("order_summary", ("o2",), "total"),
        ("order_summary", ("o5",), "units"),
        ("customer_stats", ("ghost",), "in"),
        ("product_sales", ("pear",), "missing"),
    ]
    by_table = {d.projection: d for d in differences}
    assert differences[1].problem == "total is Decimal('5.00'), events say Decimal('0.50')"
    assert differences[2].problem == "units is 11, events say 10"
    assert by_table["customer_stats"].problem == "in the table but not in the events"
    assert by_table["product_sales"].problem == "missing from the table"
    assert str(by_table["product_sales"]) == "product_sales ('pear',): missing from the table"


def test_verify_does_not_report_a_projection_that_is_merely_behind(engine: Engine) -> None:
    system = System(engine)
    system.send(*PHASES[0])
    system.catch_up()
    system.send(*PHASES[1], *PHASES[2])
    system.runner.run("order_lines")  # one ahead of the others

    assert verify_all(system) == []
    behind = system.status()["order_summary"]
    assert behind.lag_events == sum(len(p) for p in PHASES[1:])


# -- (e) a poison event parks its projection ----------------------------------------------

POISON = "poison"


@dataclass
class Flaky:
    """A projection of ItemAdded into a test table that cannot digest one item while
    ``failing``; fixing it is flipping the flag."""

    table: Table
    failing: bool = True
    # Instead of raising, hand the database a row it refuses (NULL in a NOT NULL column).
    refused_by_the_database: bool = False

    def keys(self, event: Event, order: Order) -> list[Key]:
        return [(order.order_id, event.item_id)] if isinstance(event, ItemAdded) else []

    def apply(self, event: Event, order: Order, rows: Rows) -> Changes:
        changes: Changes = {}
        for key in self.keys(event, order):
            quantity: int | None = order.lines[key[1]].quantity
            if self.failing and key[1] == POISON:
                if not self.refused_by_the_database:
                    raise RuntimeError(f"cannot digest {POISON}")
                quantity = None
            changes[key] = {"order_id": key[0], "item_id": key[1], "quantity": quantity}
        return changes

    @property
    def projection(self) -> Projection:
        return Projection("flaky", self.table, self.keys, self.apply)

    def rows(self, engine: Engine) -> dict[Key, int]:
        with engine.connect() as conn:
            found = conn.execute(select(self.table)).all()
        return {(row.order_id, row.item_id): row.quantity for row in found}


@pytest.fixture
def flaky(engine: Engine) -> Iterator[Flaky]:
    table = Table(
        "flaky_lines",
        MetaData(),
        Column("order_id", String(128), primary_key=True),
        Column("item_id", String(128), primary_key=True),
        Column("quantity", Integer, nullable=False),
    )
    with engine.begin() as conn:
        table.drop(conn, checkfirst=True)
        table.create(conn)
    try:
        yield Flaky(table)
    finally:
        with engine.begin() as conn:
            table.drop(conn, checkfirst=True)
            conn.execute(
                delete(projection_checkpoints).where(projection_checkpoints.c.name == "flaky")
            )
            conn.execute(delete(parked_events).where(parked_events.c.projection == "flaky"))


def poison_history(system: System) -> None:
    system.send(
        create("o1", "alice"),
        add("o1", "apple", 1, "1.00"),
        add("o1", POISON, 2, "1.00"),
        add("o1", "pear", 3, "1.00"),
        create("o2", "bob"),
        add("o2", "kiwi", 4, "1.00"),
    )


def log_of(system: System) -> list[Any]:
    with system.engine.connect() as conn:
        return system.reader.read_in(conn, Checkpoint(), 10_000)


def test_a_poison_event_parks_the_projection_until_it_is_fixed_and_retried(
    engine: Engine, flaky: Flaky
) -> None:
    system = System(engine, projections={"flaky": flaky.projection})
    poison_history(system)

    [result] = system.catch_up()  # (on PostgreSQL: until the log is no longer held back)

    recorded = log_of(system)
    poison_at = next(
        n
        for n, r in enumerate(recorded)
        if r.event_type == "ItemAdded" and r.stored.data["item_id"] == POISON
    )

    # Parked: stopped just before the poison event, nothing after it applied.
    assert (result.projection, result.state, result.applied) == ("flaky", "stuck", poison_at)
    entry = system.status()["flaky"]
    assert entry.stuck
    assert entry.error == f"RuntimeError: cannot digest {POISON}"
    assert entry.parked == 1
    assert entry.checkpoint == recorded[poison_at - 1].checkpoint
    assert entry.lag_events == len(recorded) - poison_at
    assert flaky.rows(engine) == {("o1", "apple"): 1}
    with engine.connect() as conn:
        parked = conn.execute(select(parked_events)).one()
    assert (parked.projection, parked.event_id, parked.event_type) == (
        "flaky",
        recorded[poison_at].event_id,
        "ItemAdded",
    )
    assert parked.position == recorded[poison_at].checkpoint.position

    # Running again does not skip it.
    again = system.runner.run("flaky")
    assert (again.applied, again.state) == (0, "stuck")
    assert system.status()["flaky"].checkpoint == entry.checkpoint
    assert flaky.rows(engine) == {("o1", "apple"): 1}

    # Retrying while still broken parks it again, at the same place.
    assert system.runner.retry("flaky").state == "stuck"
    assert system.status()["flaky"].parked == 1

    # Fixed and retried: every event applied, nothing parked.
    flaky.failing = False
    retried = system.runner.retry("flaky")
    assert (retried.state, retried.applied) == ("caught_up", len(recorded) - poison_at)
    fixed = system.status()["flaky"]
    assert (fixed.stuck, fixed.error, fixed.parked, fixed.lag_events) == (False, None, 0, 0)
    assert flaky.rows(engine) == {
        ("o1", "apple"): 1,
        ("o1", POISON): 2,
        ("o1", "pear"): 3,
        ("o2", "kiwi"): 4,
    }


def test_rows_the_database_refuses_park_the_event_that_made_them(
    engine: Engine, flaky: Flaky
) -> None:
    flaky.refused_by_the_database = True
    system = System(engine, projections={"flaky": flaky.projection})
    poison_history(system)

    [result] = system.catch_up()

    recorded = log_of(system)
    poison_at = next(
        n
        for n, r in enumerate(recorded)
        if r.event_type == "ItemAdded" and r.stored.data["item_id"] == POISON
    )
    # The batch holding the poison was refused whole; the runner went on one event at a
    # time, applied those before it and parked exactly the one whose rows were refused.
    assert result.state == "stuck"
    entry = system.status()["flaky"]
    assert entry.stuck and entry.parked == 1
    assert "IntegrityError" in (entry.error or "") or "NotNullViolation" in (entry.error or "")
    assert entry.checkpoint == recorded[poison_at - 1].checkpoint
    assert flaky.rows(engine) == {("o1", "apple"): 1}
    with engine.connect() as conn:
        assert conn.execute(select(parked_events.c.event_id)).scalar_one() == (
            recorded[poison_at].event_id
        )

    flaky.failing = False
    assert system.runner.retry("flaky").state == "caught_up"
    assert len(flaky.rows(engine)) == 4


def test_the_first_run_result_says_stuck_and_how_far_it_got(engine: Engine, flaky: Flaky) -> None:
    system = System(engine, projections={"flaky": flaky.projection})
    poison_history(system)

    result = system.runner.run("flaky")

    if engine.dialect.name == "sqlite":  # on PostgreSQL the log may be held back a while
        assert (result.projection, result.applied, result.state) == ("flaky", 2, "stuck")
    system.catch_up()
    assert system.status()["flaky"].stuck


def test_a_stuck_projection_does_not_hold_back_the_others(engine: Engine, flaky: Flaky) -> None:
    system = System(engine, projections={**PROJECTIONS, "flaky": flaky.projection})
    poison_history(system)

    results = {r.projection: r.state for r in system.catch_up()}

    assert results == {**dict.fromkeys(PROJECTIONS, "caught_up"), "flaky": "stuck"}
    report = system.status()
    assert [name for name, s in report.items() if s.stuck] == ["flaky"]
    assert all(report[name].lag_events == 0 for name in PROJECTIONS)


def test_rebuild_of_a_still_broken_projection_fails_and_keeps_the_live_table(
    engine: Engine, flaky: Flaky
) -> None:
    system = System(engine, projections={"flaky": flaky.projection})
    poison_history(system)
    system.catch_up()
    before = flaky.rows(engine)

    with pytest.raises(RebuildFailed, match="the live table is unchanged"):
        rebuild(engine, system.reader, order_history(system.store), flaky.projection)

    assert flaky.rows(engine) == before
    assert system.status()["flaky"].stuck
    assert gc.isenabled()  # the pass pauses the cycle collector, a failure too restores it

    flaky.failing = False
    rebuild(engine, system.reader, order_history(system.store), flaky.projection)

    entry = system.status()["flaky"]
    assert (entry.stuck, entry.parked, entry.lag_events) == (False, 0, 0)
    assert len(flaky.rows(engine)) == 4


def test_an_unknown_projection_is_refused(engine: Engine) -> None:
    system = System(engine)

    with pytest.raises(UnknownProjection, match="no projection named 'nope'"):
        system.runner.run("nope")
    with pytest.raises(UnknownProjection):
        system.runner.retry("nope")


def test_an_unknown_projection_error_names_the_runners_projections(
    engine: Engine, flaky: Flaky
) -> None:
    runner = System(engine, projections={"flaky": flaky.projection}).runner

    with pytest.raises(UnknownProjection) as refused:
        runner.run("nope")

    assert "known: flaky" in str(refused.value)


# -- (f) PostgreSQL: a transaction that commits late is never skipped ---------------------


@dataclass
class LateCommit:
    system: System
    a: str
    b: str
    b_projected_while_a_open: bool
    lag_while_a_open: dict[str, int]
    projected: set[str]
    differences: list[Difference]


def late_commit(pg: Engine, settle: float) -> LateCommit:
    """A inserts an event and stays open; B's command commits and the projections run;
    then A commits and they run again."""
    system = System(pg)
    system.send(create("o-old", "zoe"))
    system.catch_up()
    assert summary_ids(pg) == {"o-old"}

    event_a = created("o-a", customer_id="amy")
    conn_a = pg.connect()
    try:
        transaction_a = conn_a.begin()
        conn_a.execute(events.insert(), event_to_row(event_a))
        system.send(create("o-b", "ben"))  # B commits while A is still open
        system.runner.run_all()
        b_early = "o-b" in summary_ids(pg)
        lag = {name: s.lag_events for name, s in system.status().items()}
        transaction_a.commit()
    finally:
        conn_a.close()

    system.catch_up(timeout=settle)
    return LateCommit(
        system=system,
        a="o-a",
        b="o-b",
        b_projected_while_a_open=b_early,
        lag_while_a_open=lag,
        projected=summary_ids(pg),
        differences=verify_all(system),
    )


def assert_late_commit_projected(run: LateCommit) -> None:
    assert not run.b_projected_while_a_open
    assert all(lag >= 1 for lag in run.lag_while_a_open.values()), run.lag_while_a_open
    assert run.projected == {"o-old", run.a, run.b}
    assert run.differences == []


def test_a_run_that_stops_behind_an_open_transaction_says_held_back(pg: Engine) -> None:
    """The run applies what is readable and reports the rest as held back, not as
    caught up: its caller (the wake-up) looks again only on ``held_back``."""
    system = System(pg)
    system.send(create("o-c", "cat"))  # committed before A began: readable
    conn_a = pg.connect()
    try:
        transaction_a = conn_a.begin()
        conn_a.execute(events.insert(), event_to_row(created("o-a", customer_id="amy")))
        system.send(create("o-b", "ben"))  # committed after A began: held back
        results = system.runner.run_all()
        transaction_a.commit()
    finally:
        conn_a.close()

    assert {(r.state, r.applied) for r in results} == {("held_back", 1)}
    assert summary_ids(pg) == {"o-c"}
    assert {(r.state, r.applied) for r in system.runner.run_all()} == {("caught_up", 2)}
    assert summary_ids(pg) == {"o-a", "o-b", "o-c"}


def test_a_transaction_open_across_a_later_commit_is_projected(pg: Engine) -> None:
    run = late_commit(pg, settle=30)

    assert_late_commit_projected(run)
    with pg.connect() as conn:
        amy = conn.execute(
            select(customer_stats.c.orders_created).where(customer_stats.c.customer_id == "amy")
        ).scalar_one()
    assert amy == 1


def unguarded_query() -> str:
    guarded = global_log._GAP_FREE_AFTER
    kept = [line for line in guarded.splitlines() if "pg_snapshot_xmin" not in line]
    assert len(kept) == len(guarded.splitlines()) - 1, "the xmin guard moved"
    return "\n".join(kept)


def test_without_the_xmin_guard_the_late_commit_is_lost_from_the_read_model(
    pg: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Proof that the test above can fail: the same run on a reader without
    ``transaction_id < pg_snapshot_xmin(...)`` projects B early and loses A for good."""
    monkeypatch.setattr(global_log, "_GAP_FREE_AFTER", unguarded_query())

    run = late_commit(pg, settle=1)

    assert run.b_projected_while_a_open
    assert run.a not in run.projected
    assert Difference("order_summary", (run.a,), "missing from the table") in run.differences
    assert Difference("customer_stats", ("amy",), "missing from the table") in run.differences
    with pytest.raises(AssertionError):
        assert_late_commit_projected(run)


# -- (g) an event of a type nobody knows --------------------------------------------------


def test_an_unknown_event_type_parks_every_projection(engine: Engine) -> None:
    system = System(engine)
    system.send(create("o1", "alice"), add("o1", "apple", 2, "1.50"), pay("o1"))
    system.catch_up()
    before = snapshot_tables(engine)
    shipped = raw_event_row("o1", 4, "OrderShipped", {"carrier": "ups"})
    with engine.begin() as conn:
        conn.execute(events.insert(), shipped)
    system.send(create("o2", "bob"))  # after the unknown event in the log

    system.catch_up()

    report = system.status()
    for name, entry in report.items():
        assert entry.stuck, name
        assert entry.error is not None
        assert entry.error.startswith("UnknownEventType"), entry.error
        assert "OrderShipped" in entry.error
        assert entry.parked == 1
        assert entry.lag_events == 2
    with engine.connect() as conn:
        parked = conn.execute(select(parked_events.c.event_id, parked_events.c.event_type)).all()
    assert {tuple(row) for row in parked} == {(shipped["event_id"], "OrderShipped")}
    assert len(parked) == len(PROJECTIONS)
    assert snapshot_tables(engine) == before  # o2, after it, is not projected
    assert verify_all(system) == []  # consistent up to where each stopped


# -- the SQLite bug in customer_stats -----------------------------------------------------


def second_order_in_a_later_run(system: System) -> None:
    system.send(create("o1", "alice"))
    system.catch_up()
    system.send(create("o2", "alice"), add("o2", "apple", 1, "1.00"), pay("o2"))
    system.catch_up()


def assert_second_order_counted(system: System) -> None:
    entry = system.status()["customer_stats"]
    assert (entry.stuck, entry.error) == (False, None)
    with system.engine.connect() as conn:
        alice = conn.execute(select(customer_stats)).one()
    assert (alice.orders_created, alice.orders_paid, alice.lifetime_value) == (
        2,
        1,
        Decimal("1.00"),
    )


def test_a_customers_second_order_in_a_later_run_on_postgresql(pg: Engine) -> None:
    system = System(pg)
    second_order_in_a_later_run(system)
    assert_second_order_counted(system)


def test_a_customers_second_order_in_a_later_run_on_sqlite(sqlite: Engine) -> None:
    system = System(sqlite)
    second_order_in_a_later_run(system)
    assert_second_order_counted(system)


def test_order_lines_follow_removals_through_the_runner(engine: Engine) -> None:
    system = System(engine)
    system.send(create("o1", "alice"), add("o1", "apple", 1, "1.00"), add("o1", "fig", 1, "2.00"))
    system.catch_up()
    system.send(remove("o1", "apple"), add("o1", "fig", 2, "2.00"), cancel("o1"))
    system.catch_up()

    tables = snapshot_tables(engine)

    assert [(r["item_id"], r["quantity"]) for r in tables["order_lines"]] == [("fig", 3)]
    [summary] = tables["order_summary"]
    assert (summary["status"], summary["item_count"], summary["units"]) == ("cancelled", 1, 3)
    assert verify_all(system) == []


# -- PostgreSQL: an amount too large for the read model's NUMERIC(14, 2) ------------------


def test_the_largest_order_the_commands_allow_is_projected_exactly(pg: Engine) -> None:
    system = System(pg)
    # 100 lines at the largest quantity and price the commands accept: 10**12 in all.
    system.send(
        create("big", "whale"), *(add("big", f"i{n:03}", 10_000, "1000000") for n in range(100))
    )

    system.catch_up()

    report = system.status()
    assert not any(entry.stuck for entry in report.values())
    with pg.connect() as conn:
        total = conn.execute(
            select(order_summary.c.total).where(order_summary.c.order_id == "big")
        ).scalar_one()
    assert total == Decimal("1000000000000.00")


# -- a wake-up is one transaction, one read of the log, one lock --------------------------


def test_a_wake_up_runs_every_projection_in_one_transaction_and_one_read(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    system = System(engine)
    system.send(*PHASES[0])
    system.catch_up()  # (on PostgreSQL, until nothing is held back)
    new_events = sum(len(o.events) for o in system.send(*PHASES[1]))
    reads: list[Checkpoint] = []
    read_in = system.reader.read_in

    def counted(conn: Any, after: Checkpoint, limit: int) -> Any:
        reads.append(after)
        return read_in(conn, after, limit)

    monkeypatch.setattr(system.reader, "read_in", counted)
    commits: list[object] = []

    def committed(conn: object) -> None:
        commits.append(conn)

    event.listen(engine, "commit", committed)
    try:
        results = system.runner.run_all()
    finally:
        event.remove(engine, "commit", committed)

    if {r.state for r in results} == {"caught_up"}:  # on PostgreSQL: nothing held back
        assert {r.applied for r in results} == {new_events}
        assert (len(commits), len(reads)) == (1, 1)
    system.catch_up()
    assert verify_all(system) == []


def test_projections_at_different_checkpoints_each_get_their_own_events(engine: Engine) -> None:
    """One read from the lowest checkpoint feeds the others the part after theirs; one far
    ahead of a batch is read for apart. Small batches make every case happen."""
    system = System(engine, batch_size=2)
    system.send(*PHASES[0])
    system.catch_up(system.new_runner(batch_size=500))
    system.send(*PHASES[1])
    system.runner.run("order_lines")  # at the head, the others a phase behind
    system.runner.run("revenue_daily")
    system.send(*PHASES[2])

    system.catch_up()

    with engine.connect() as conn:
        head = system.reader.head(conn)
    assert {name: s.checkpoint for name, s in system.status().items()} == dict.fromkeys(
        PROJECTIONS, head
    )
    assert verify_all(system) == []


def test_rows_refused_in_a_shared_run_park_only_their_projection(
    engine: Engine, flaky: Flaky
) -> None:
    flaky.refused_by_the_database = True
    system = System(engine, projections={**PROJECTIONS, "flaky": flaky.projection})
    poison_history(system)

    results = {r.projection: r.state for r in system.catch_up()}

    assert results == {**dict.fromkeys(PROJECTIONS, "caught_up"), "flaky": "stuck"}
    recorded = log_of(system)
    poison_at = next(n for n, r in enumerate(recorded) if r.stored.data.get("item_id") == POISON)
    report = system.status()
    assert report["flaky"].checkpoint == recorded[poison_at - 1].checkpoint
    assert all(report[name].lag_events == 0 for name in PROJECTIONS)
    with engine.connect() as conn:
        parked = conn.execute(select(parked_events.c.projection, parked_events.c.event_id)).all()
    assert [tuple(row) for row in parked] == [("flaky", recorded[poison_at].event_id)]
    assert flaky.rows(engine) == {("o1", "apple"): 1}
    verified = verify(engine, system.reader, order_history(system.store), PROJECTIONS.values())
    assert verified == []


def test_a_rebuild_holds_every_run_off_until_it_is_done(pg: Engine) -> None:
    """A run takes one lock for all the projections; a rebuild of any of them holds it
    too, so a run never writes rows that the rebuild's swap would mix with its own."""
    system = System(pg)
    system.send(*PHASES[0])
    with pg.connect() as rebuilding:
        for name in ("order_summary", "customer_stats"):  # as rebuild() takes them
            hold_lock(rebuilding, name)
        rebuilding.commit()
        try:
            assert {(r.state, r.applied) for r in system.runner.run_all()} == {("busy", 0)}
            assert system.runner.run("order_lines").state == "busy"
            assert snapshot_tables(pg)["order_summary"] == []
        finally:
            for name in ("order_summary", "customer_stats"):
                release_lock(rebuilding, name)
            rebuilding.commit()

    assert {r.state for r in system.catch_up()} == {"caught_up"}
    assert verify_all(system) == []


def test_each_applied_event_is_logged_per_projection_with_its_command(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    system = System(engine)
    system.catch_up()
    command = create("o-log", "alice", correlation_id="checkout-7")
    system.send(command)

    with caplog.at_level(logging.DEBUG, logger="readmodels.runner"):
        system.catch_up()

    lines = [r for r in caplog.records if getattr(r, "order_id", None) == "o-log"]
    assert sorted(r.__dict__["projection"] for r in lines) == sorted(PROJECTIONS)
    assert {(r.__dict__["command_id"], r.__dict__["correlation_id"]) for r in lines} == {
        (command.command_id, "checkout-7")
    }
