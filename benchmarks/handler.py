"""Commands per second through the command handler, beside raw psycopg2 doing the same
round trips (read the stream, insert, commit); one new order per command."""

from __future__ import annotations

import json
import threading
import uuid
from datetime import UTC, datetime

import psycopg2

from benchmarks.measure import median_of, rate
from benchmarks.scratch import libpq_dsn
from commands import CreateOrder
from domain.handler import CommandHandler
from store.engine import build_engine
from store.event_store import SqlEventStore


def handler_cps(url: str, threads: int, per_thread: int, repeats: int) -> float:
    engine = build_engine(url, pool_size=threads + 2)
    handler = CommandHandler(SqlEventStore(engine), snapshot_every=0)
    # Commands built up front: producing them is the producer's cost, not the handler's.
    commands = [
        [CreateOrder(f"h-{uuid.uuid4()}", "customer-1") for _ in range(per_thread)]
        for _ in range(threads * repeats)
    ]
    batches = iter(commands)
    lock = threading.Lock()

    def one_run() -> float:
        mine: dict[int, list[CreateOrder]] = {}

        def work(index: int) -> None:
            key = threading.get_ident()
            if key not in mine:
                with lock:
                    mine[key] = next(batches)
            outcome = handler.handle(mine[key][index])
            assert outcome.accepted, outcome

        return rate(work, per_thread, threads)

    try:
        for _ in range(20):  # warm the pool and the statement caches
            handler.handle(CreateOrder(f"w-{uuid.uuid4()}", "customer-1"))
        return median_of(repeats, one_run)
    finally:
        engine.dispose()


def raw_cps(url: str, threads: int, per_thread: int, repeats: int) -> float:
    dsn = libpq_dsn(url)
    local = threading.local()

    def work(_: int) -> None:
        if not hasattr(local, "conn"):
            local.conn = psycopg2.connect(dsn)
        conn = local.conn
        order_id = f"r-{uuid.uuid4()}"
        with conn.cursor() as cursor:
            cursor.execute(
                "SELECT version, event_type, schema_version, data, metadata, recorded_at "
                "FROM events WHERE aggregate_type = %s AND aggregate_id = %s ORDER BY version",
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
                    json.dumps({"customer_id": "customer-1", "status": "created"}),
                    json.dumps({}),
                    datetime.now(UTC),
                ),
            )
        conn.commit()

    return median_of(repeats, lambda: rate(work, per_thread, threads))
