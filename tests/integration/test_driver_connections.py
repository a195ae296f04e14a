"""The hot path's own connections (``store/driver.py``) on real PostgreSQL: reused, not
multiplied by stores, recovered after a drop, closed with the engine, safe across fork."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import IntegrityError, OperationalError

from bootstrap import Settings, bootstrap
from commands import CreateOrder
from domain.handler import CommandHandler
from store import SqlEventStore, open_event_store
from store.engine import build_engine
from tests.support.events import created
from tests.support.waiting import eventually


@pytest.fixture
def tagged(postgres_url: str, pg: Engine) -> Iterator[tuple[Engine, str]]:
    """An engine of its own whose connections the server can tell apart."""
    name = f"orders-test-{uuid.uuid4().hex[:8]}"
    engine = build_engine(
        postgres_url, pool_size=3, max_overflow=0, connect_args={"application_name": name}
    )
    yield engine, name
    engine.dispose()


def sessions(admin: Engine, name: str) -> int:
    with admin.connect() as conn:
        query = text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :name")
        return int(conn.execute(query, {"name": name}).scalar_one())


def accept(store: SqlEventStore) -> None:
    outcome = CommandHandler(store).handle(CreateOrder(f"o-{uuid.uuid4()}", "customer-1"))
    assert outcome.accepted, outcome


def test_commands_on_one_thread_reuse_one_connection_whatever_the_stores(
    tagged: tuple[Engine, str], pg: Engine
) -> None:
    engine, name = tagged
    for _ in range(3):
        store = open_event_store(engine)
        for _ in range(20):
            accept(store)

    assert engine.pool.checkedout() == 1  # type: ignore[attr-defined]
    assert sessions(pg, name) == 1


def test_a_statement_the_database_refuses_keeps_its_connection(
    tagged: tuple[Engine, str], pg: Engine
) -> None:
    engine, name = tagged
    store = open_event_store(engine)
    event = created("o-1")
    store.append("o-1", 0, [event])

    with pytest.raises(IntegrityError):
        store.append("o-2", 0, [created("o-2", event_id=event.event_id)])  # a reused id
    accept(store)

    assert engine.pool.checkedout() == 1  # type: ignore[attr-defined]
    assert sessions(pg, name) == 1


def test_a_dropped_connection_fails_one_statement_and_the_next_reconnects(
    tagged: tuple[Engine, str], pg: Engine
) -> None:
    engine, name = tagged
    store = open_event_store(engine)
    accept(store)
    with pg.connect() as conn:
        conn.execute(
            text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                 "WHERE application_name = :name"),
            {"name": name},
        )  # fmt: skip
    eventually(lambda: sessions(pg, name), lambda count: count == 0)

    with pytest.raises(OperationalError):  # what the task retries on
        accept(store)
    accept(store)

    assert sessions(pg, name) == 1


def test_disposing_the_engine_closes_them(tagged: tuple[Engine, str], pg: Engine) -> None:
    engine, name = tagged
    accept(open_event_store(engine))

    engine.dispose()

    assert eventually(lambda: sessions(pg, name), lambda count: count == 0) == 0


def test_a_forked_child_leaves_its_parents_connections_alone(
    tagged: tuple[Engine, str], pg: Engine
) -> None:
    """Celery's prefork pool forks; the child disposes what it inherited without closing
    it (workers/runtime.py). Closing would end the parent's sessions on the server."""
    engine, name = tagged
    store = open_event_store(engine)
    accept(store)

    child = os.fork()
    if child == 0:  # pragma: no cover - runs in the child
        engine.dispose(close=False)
        os._exit(0)
    _, status = os.waitpid(child, 0)

    assert os.waitstatus_to_exitcode(status) == 0
    accept(store)  # the parent's connection still works
    assert sessions(pg, name) == 1


def test_more_threads_than_the_pool_holds_still_all_get_a_connection(
    postgres_url: str, pg: Engine
) -> None:
    """Connections kept for the hot path must not starve threads waiting on the pool:
    kept only below the pool's size, they go back to it past that."""
    engine = build_engine(postgres_url, pool_size=2, max_overflow=0, pool_timeout=5)
    store = open_event_store(engine)
    try:
        with ThreadPoolExecutor(max_workers=6) as threads:
            list(threads.map(lambda _: [accept(store) for _ in range(15)], range(6)))
        assert engine.pool.checkedout() <= 2  # type: ignore[attr-defined]
    finally:
        engine.dispose()


def test_json_columns_decode_as_the_driver_would(pg: Engine) -> None:
    # build_engine swaps the driver's json.loads for decode_jsonb: jsonb comes back
    # as PostgreSQL printed it, json keeps the spaces it was written with.
    query = text("SELECT CAST(:doc AS jsonb), CAST(:spaced AS json), CAST(NULL AS jsonb)")
    doc = '{"b": [1, 2.5, "x", null], "a": {"c": true}}'
    with pg.connect() as conn:
        row = conn.execute(query, {"doc": doc, "spaced": '  {"k" : 1}  '}).one()
    assert tuple(row) == ({"a": {"c": True}, "b": [1, 2.5, "x", None]}, {"k": 1}, None)


def test_a_worker_keeps_as_many_connections_as_configured(postgres_url: str, pg: Engine) -> None:
    # With --pool threads and more threads than the pool holds, the hot path's
    # connections would go back to the pool after every statement (store/driver.py).
    settings = Settings(database_url=postgres_url, db_pool_size=7)
    services = bootstrap(settings)
    try:
        assert services.engine.pool.size() == 7  # type: ignore[attr-defined]
        with ThreadPoolExecutor(max_workers=7) as threads:
            list(threads.map(lambda _: accept(services.store), range(70)))
    finally:
        services.close()
