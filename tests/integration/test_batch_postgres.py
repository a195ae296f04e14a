"""What only PostgreSQL can show of a batch: another writer's uncommitted row on the same
version makes the batch's insert wait, then fail on the unique constraint once it
commits; only that write is rolled back (to its savepoint), the batch goes on."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import Connection, Engine, event, text

import store.postgres.batch as batch_module
from commands import CreateOrder, PayOrder
from domain.errors import VersionConflict
from domain.handler import CommandHandler, RetryPolicy
from domain.ports import EventStore, StreamState
from store import open_event_store
from store.postgres.driver import PREPARES
from tests.support.commands import ORDER, add, create, pay
from tests.support.contract import accepted
from tests.support.events import created, item_added
from tests.support.ids import new_id


def test_a_racing_commit_fails_only_its_write_and_the_batch_commits_the_rest(pg: Engine) -> None:
    store = open_event_store(pg)
    store.append(ORDER, 0, [created(ORDER)])
    rival = pg.connect()
    rival_tx = rival.begin()
    store._append_on(rival, ORDER, 1, [item_added(ORDER, 2, item_id="rival")], None, None, None)
    threading.Timer(0.3, rival_tx.commit).start()  # while the batch waits on its row
    lost, kept = new_id(), new_id()

    started = time.monotonic()
    with store.write_batch() as batch:
        try:
            batch.append(ORDER, 1, [item_added(ORDER, 2)], outcome=accepted(lost, 2, "ItemAdded"))
        except VersionConflict as conflict:
            assert (conflict.expected, conflict.actual) == (1, 2)
        else:
            raise AssertionError("the batch's write did not lose the race")
        assert time.monotonic() - started >= 0.2  # it waited for the rival's commit
        batch.append("order-002", 0, [created("order-002")], outcome=accepted(kept, 1))
    rival.close()

    assert [e.data().get("item_id") for e in store.load(ORDER)][1:] == ["rival"]
    assert store.find_outcome(lost) is None
    assert store.find_outcome(kept) == accepted(kept, 1)


class Statements:
    """What a batch sends: the driver's cursor (``driver_cursor``) and SQLAlchemy's."""

    def __init__(self, engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
        self.sent: list[str] = []
        real = batch_module.driver_cursor

        @contextmanager
        def recording(conn: Connection, name: str | None = None) -> Iterator[Any]:
            with real(conn, name) as cursor:
                yield _Recording(cursor, self.sent)

        monkeypatch.setattr(batch_module, "driver_cursor", recording)
        event.listen(engine, "before_cursor_execute", self._core)
        self._engine = engine

    def _core(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        self.sent.append(statement)

    def close(self) -> None:
        event.remove(self._engine, "before_cursor_execute", self._core)

    def groups(self) -> int:
        return sum("orders_append_group" in sql or "unnest" in sql for sql in self.sent)


class _Recording:
    def __init__(self, cursor: Any, sent: list[str]) -> None:
        self._cursor = cursor
        self._sent = sent

    def execute(self, sql: str, values: Any = None) -> None:
        self._sent.append(sql)
        self._cursor.execute(sql, values)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cursor, name)


@pytest.fixture
def statements(pg: Engine, monkeypatch: pytest.MonkeyPatch) -> Iterator[Statements]:
    recorder = Statements(pg, monkeypatch)
    yield recorder
    recorder.close()


def _handler(store: EventStore) -> CommandHandler:
    return CommandHandler(store, retry=RetryPolicy(base_delay=0))


@pytest.mark.parametrize("prepared", [True, False], ids=["prepared", "behind a pooler"])
def test_a_batch_without_races_writes_all_its_commands_in_one_statement(
    pg: Engine, statements: Statements, prepared: bool
) -> None:
    store = open_event_store(pg if prepared else pg.execution_options(**{PREPARES: False}))
    _handler(store).handle(create("o1"))
    statements.sent.clear()
    batch = [add("o1"), create("o2"), add("o2"), pay("o1"), add("o3"), add("o1", "pear")]

    outcomes = _handler(store).handle_many(batch)

    assert [(o.status, o.version) for o in outcomes] == [
        ("accepted", 2),
        ("accepted", 1),
        ("accepted", 2),
        ("accepted", 3),
        ("rejected", None),  # o3 does not exist
        ("rejected", None),  # o1 is paid
    ]
    # The read, then the group write: nothing else (BEGIN and COMMIT are no statements).
    [read, group] = statements.sent
    assert "FROM command_log" in read and "INSERT INTO command_log" not in read
    if prepared:
        assert "EXECUTE orders_append_group" in group
    else:
        assert "unnest" in group and "PREPARE" not in group
    assert [e.version for e in store.load("o1")] == [1, 2, 3]
    assert [e.version for e in store.load("o2")] == [1, 2]
    assert all(store.find_outcome(o.command_id) == o for o in outcomes)
    # One transaction, in the batch's order (grouped by order): the global log's order.
    with pg.connect() as conn:
        rows = conn.execute(
            text("SELECT aggregate_id, version, transaction_id::text FROM events ORDER BY position")
        ).all()
    assert [(a, v) for a, v, _ in rows] == [("o1", 1), ("o1", 2), ("o1", 3), ("o2", 1), ("o2", 2)]
    assert len({tx for *_, tx in rows[1:]}) == 1


@pytest.mark.parametrize("rival_commits", ["before", "while the group waits"])
def test_a_group_that_races_a_writer_falls_back_and_commits_the_others(
    pg: Engine, statements: Statements, monkeypatch: pytest.MonkeyPatch, rival_commits: str
) -> None:
    store = open_event_store(pg)
    for order in ("o1", "o2", "o3"):
        store.append(order, 0, [created(order)])
    read = store.load_streams
    rival = pg.connect()

    def read_then_race(*args: Any, **kwargs: Any) -> list[StreamState]:
        # The batch has read o2 at v1; the rival now takes v2 before the batch writes.
        states = read(*args, **kwargs)
        rival_tx = rival.begin()
        store._append_on(rival, "o2", 1, [item_added("o2", 2, item_id="rival")], None, None, None)
        if rival_commits == "before":  # the group sees o2 moved
            rival_tx.commit()
        else:  # the group's insert of o2 v2 waits on the rival's, then fails on it
            threading.Timer(0.3, rival_tx.commit).start()
        return states

    monkeypatch.setattr(store, "load_streams", read_then_race)
    batch = [add("o1"), add("o2"), add("o3"), pay("o2")]

    started = time.monotonic()
    outcomes = _handler(store).handle_many(batch)
    rival.close()

    if rival_commits != "before":  # the group waited on the rival's v2, then lost to it
        assert time.monotonic() - started >= 0.2

    assert [(o.status, o.version) for o in outcomes] == [
        ("accepted", 2),
        ("accepted", 3),  # decided again after the rival's v2
        ("accepted", 2),
        ("accepted", 4),
    ]
    assert statements.groups() == 1  # tried once, undone, then command by command
    for order, versions in {"o1": [1, 2], "o2": [1, 2, 3, 4], "o3": [1, 2]}.items():
        assert [e.version for e in store.load(order)] == versions
    assert [e.data().get("item_id") for e in store.load("o2")][1:3] == ["rival", "apple"]
    assert all(store.find_outcome(o.command_id) == o for o in outcomes)
    with pg.connect() as conn:
        logged = conn.execute(text("SELECT count(*) FROM command_log")).scalar_one()
    assert logged == len(batch)


def test_a_command_id_twice_in_a_batch_is_written_command_by_command(
    pg: Engine, statements: Statements
) -> None:
    store = open_event_store(pg)
    first = create("o1")
    twin = CreateOrder("o1", "customer-123", command_id=first.command_id)
    reused = PayOrder("o1", "cash", command_id=first.command_id)

    [created, again, refused] = _handler(store).handle_many([first, twin, reused])

    assert again == created and created.status == "accepted"
    assert (refused.status, refused.error) == ("rejected", "CommandIdReused")
    assert statements.groups() == 0  # given up before anything was sent
    assert [e.version for e in store.load("o1")] == [1]
    with pg.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM command_log")).scalar_one() == 1
