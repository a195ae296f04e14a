"""Commands per second through the command handler, beside raw psycopg2 doing the same
round trips (read the stream, insert, commit); one new order per command. In batch mode
(``handler_batch_runs``) the handler decides ``BATCH`` commands per call of
``handle_many``: their streams read in one round trip, their writes committed together.

Each is a context giving one timed run per call, so that ``run.py`` can let the handler
and its limit take turns: a machine that slows down mid-run slows both alike.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

import psycopg2

from benchmarks.measure import rate
from benchmarks.scratch import libpq_dsn
from commands import CreateOrder
from domain.handler import CommandHandler
from store import open_event_store
from store.engine import build_engine

T = TypeVar("T")

BATCH = 20
"""Commands per ``handle_many`` call: ``orders worker --batch``'s default size."""


@contextmanager
def handler_runs(url: str, threads: int, per_thread: int) -> Iterator[Callable[[], float]]:
    engine = build_engine(url, pool_size=threads + 2)
    handler = CommandHandler(open_event_store(engine), snapshot_every=0)

    def one_run() -> float:
        # Commands built before the clock starts: producing them is the producer's cost.
        batches = [
            [CreateOrder(f"h-{uuid.uuid4()}", "customer-1") for _ in range(per_thread)]
            for _ in range(threads)
        ]
        mine = _per_thread(batches)

        def work(index: int) -> None:
            outcome = handler.handle(mine()[index])
            assert outcome.accepted, outcome

        return rate(work, per_thread, threads)

    try:
        for _ in range(20):  # warm the pool and the statement caches
            handler.handle(CreateOrder(f"w-{uuid.uuid4()}", "customer-1"))
        yield one_run
    finally:
        engine.dispose()


@contextmanager
def handler_batch_runs(
    url: str, threads: int, per_thread: int, batch: int = BATCH
) -> Iterator[Callable[[], float]]:
    """As ``handler_runs``, ``batch`` commands per ``handle_many`` call (group commit)."""
    engine = build_engine(url, pool_size=threads + 2)
    handler = CommandHandler(open_event_store(engine), snapshot_every=0)
    calls = -(-per_thread // batch)

    def one_run() -> float:
        chunks = [
            [
                [CreateOrder(f"b-{uuid.uuid4()}", "customer-1") for _ in range(batch)]
                for _ in range(calls)
            ]
            for _ in range(threads)
        ]
        mine = _per_thread(chunks)

        def work(index: int) -> None:
            outcomes = handler.handle_many(mine()[index])
            assert all(outcome.accepted for outcome in outcomes), outcomes

        return rate(work, calls, threads) * batch

    try:
        for _ in range(threads + 2):  # warm the pool and the statement caches
            handler.handle_many(
                [CreateOrder(f"w-{uuid.uuid4()}", "customer-1") for _ in range(batch)]
            )
        yield one_run
    finally:
        engine.dispose()


@contextmanager
def raw_runs(url: str, threads: int, per_thread: int) -> Iterator[Callable[[], float]]:
    # Connected before the clock starts, as the handler's pool is.
    connections = [psycopg2.connect(libpq_dsn(url)) for _ in range(threads)]

    def one_run() -> float:
        mine = _per_thread(connections)

        def work(_: int) -> None:
            raw_create_order(mine(), f"r-{uuid.uuid4()}", "customer-1")

        return rate(work, per_thread, threads)

    try:
        yield one_run
    finally:
        for conn in connections:
            conn.close()


def raw_create_order(conn: Any, order_id: str, customer_id: str) -> None:
    """What the handler does for a new order, as psycopg2 alone does it: read the stream,
    insert its first event, commit. The limit the handler and the pipeline stand beside."""
    with conn.cursor() as cursor:
        cursor.execute(
            "SELECT version, event_type, schema_version, data, metadata, recorded_at "
            "FROM events WHERE aggregate_type = %s AND aggregate_id = %s "
            "ORDER BY version",
            ("Order", order_id),
        )
        cursor.fetchall()
        cursor.execute(
            "INSERT INTO events (event_id, aggregate_type, aggregate_id, version, "
            "event_type, schema_version, data, metadata, recorded_at) "
            "VALUES (%s, %s, %s, 1, %s, 1, %s, %s, %s)",
            (
                str(uuid.uuid4()),
                "Order",
                order_id,
                "OrderCreated",
                json.dumps({"customer_id": customer_id, "status": "created"}),
                json.dumps({}),
                datetime.now(UTC),
            ),
        )
    conn.commit()


def _per_thread(items: list[T]) -> Callable[[], T]:
    """Hands each thread that calls it one of ``items``, the same one every time."""
    left = iter(items)
    lock = threading.Lock()
    local = threading.local()

    def mine() -> T:
        item: T | None = getattr(local, "item", None)
        if item is None:
            with lock:
                item = local.item = next(left)
        return item

    return mine
