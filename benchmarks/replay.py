"""Loading long orders (beside raw psycopg2 reading the same rows) and rebuilding every
read model from a log of many events."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import psycopg2

from benchmarks.measure import interleaved_medians, millis
from benchmarks.scratch import libpq_dsn
from bootstrap import order_history
from domain.events import Event, ItemAdded, ItemRemoved, OrderCancelled, OrderCreated, OrderPaid
from domain.handler import load_order
from domain.snapshots import take_snapshot
from readmodels.maintenance import rebuild
from readmodels.projections import PROJECTIONS
from store import open_event_store, open_global_log
from store.codec import event_to_row
from store.engine import build_engine
from store.schema import events

START = datetime(2026, 1, 1, tzinfo=UTC)


def _event(cls: type[Event], order_id: str, version: int, **payload: Any) -> Event:
    return cls(
        aggregate_id=order_id,
        version=version,
        event_id=str(uuid.uuid4()),
        timestamp=START + timedelta(seconds=version),
        **payload,
    )


def long_order(order_id: str, length: int) -> Iterator[Event]:
    """An order with many events on a handful of items, as long orders have."""
    yield _event(OrderCreated, order_id, 1, customer_id="customer-1")
    for version in range(2, length + 1):
        yield _event(
            ItemAdded,
            order_id,
            version,
            item_id=f"i{version % 5}",
            quantity=1,
            price=Decimal("1.00"),
        )


def replay(url: str, lengths: tuple[int, ...], repeats: int) -> dict[str, float]:
    engine = build_engine(url)
    store = open_event_store(engine)
    results: dict[str, float] = {}
    middle = sorted(lengths)[len(lengths) // 2]
    try:
        for length in lengths:
            order_id = f"replay-{length}-{uuid.uuid4().hex[:6]}"
            _insert(engine, list(long_order(order_id, length)))

            def load(order_id: str = order_id) -> None:
                load_order(store, order_id)

            load()  # warm the connection and the statement cache
            if length == middle:
                with raw_reader(url, order_id) as raw_read:
                    measures = {
                        f"replay_ms_{length}": lambda: millis(load, 1),
                        f"raw_read_ms_{length}": lambda: millis(raw_read, 1),
                    }
                    results.update(interleaved_medians(repeats, measures))
            else:
                results[f"replay_ms_{length}"] = millis(load, repeats)
            if length == max(lengths):
                store.save_snapshot(take_snapshot(load_order(store, order_id)))
                load()
                results[f"replay_snap_ms_{length}"] = millis(load, repeats)
    finally:
        engine.dispose()
    return results


@contextmanager
def raw_reader(url: str, order_id: str) -> Iterator[Callable[[], None]]:
    """Selecting an order's rows with psycopg2, connected and warmed up."""
    with closing(psycopg2.connect(libpq_dsn(url))) as conn, conn.cursor() as cursor:
        conn.autocommit = True

        def read() -> None:
            cursor.execute(
                "SELECT version, event_type, schema_version, event_id, data, metadata, "
                "recorded_at FROM events WHERE aggregate_type = %s AND aggregate_id = %s "
                "ORDER BY version",
                ("Order", order_id),
            )
            cursor.fetchall()

        read()
        yield read


def orders_log(orders: int) -> Iterator[Event]:
    """Ten events an order: created, seven items added, one removed, then paid or cancelled."""
    for number in range(orders):
        order_id = f"log-{number:07d}"
        version = 1
        yield _event(OrderCreated, order_id, version, customer_id=f"customer-{number % 997}")
        for item in range(7):
            version += 1
            yield _event(
                ItemAdded,
                order_id,
                version,
                item_id=f"item-{(number + item) % 211}",
                quantity=1 + item,
                price=Decimal(f"{1 + (number + item) % 211}.25"),
            )
        version += 1
        yield _event(ItemRemoved, order_id, version, item_id=f"item-{number % 211}")
        version += 1
        if number % 4:
            yield _event(OrderPaid, order_id, version, payment_method="card")
        else:
            yield _event(OrderCancelled, order_id, version, reason="changed my mind")


def rebuild_figures(url: str, event_count: int) -> dict[str, float]:
    """``rebuild_eps``: events per second of ``orders projections rebuild --all``, and
    ``rebuild_us_per_event``: this process's CPU time (user and system) per event, every
    projection together, the unit of the live projections' ``live_proj_us_per_event``.
    PostgreSQL's own CPU is in neither."""
    engine = build_engine(url)
    try:
        _insert(engine, list(orders_log(event_count // 10)))
        store = open_event_store(engine)
        # Counted as rebuilt, so the figure stays true on a log holding other events too.
        batches: list[int] = []
        cpu_before = _cpu()
        started = time.perf_counter()
        rebuild(
            engine,
            open_global_log(engine),
            order_history(store),
            list(PROJECTIONS.values()),
            progress=batches.append,
        )
        elapsed = time.perf_counter() - started
        cpu = _cpu() - cpu_before
        rebuilt = sum(batches)
        return {"rebuild_eps": rebuilt / elapsed, "rebuild_us_per_event": cpu / rebuilt * 1e6}
    finally:
        engine.dispose()


def _cpu() -> float:
    """User and system CPU of this process (no other thread runs during a rebuild)."""
    times = os.times()
    return times.user + times.system


def _insert(engine: object, batch: list[Event]) -> None:
    rows = [event_to_row(event) for event in batch]
    with engine.begin() as conn:  # type: ignore[attr-defined]
        for start in range(0, len(rows), 5_000):
            conn.execute(events.insert(), rows[start : start + 5_000])
