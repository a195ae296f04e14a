"""One order with very many items: bounded by a domain rule, and by the caches' size.

Before: one order of 10,000 ``AddItem``s grew the projection process to 1.38 GB (an
Order cached per version, each with its lines) and each command took 34 ms, not 9.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from decimal import Decimal

import pytest
from sqlalchemy import Engine, func, select

from commands import AddItem, CreateOrder
from commands.client import CommandClient
from readmodels.tables import order_lines, order_summary
from tests.support.proc import tree_peak_rss_mb
from tests.support.workers import WorkerProcess


@pytest.mark.parametrize("max_lines", [300])
def test_an_order_stops_at_its_lines_limit_and_the_workers_stay_small(
    start_worker: Callable[..., WorkerProcess],
    client: CommandClient,
    pg: Engine,
    max_lines: int,
) -> None:
    worker = start_worker({"ORDERS_MAX_LINES": str(max_lines)}, concurrency=2)
    order = "order-big"
    assert client.send(CreateOrder(order, "customer-1")).wait(timeout=30).accepted
    adds = [
        AddItem(order, f"item-{index:05d}", 1, Decimal("1.00")) for index in range(max_lines + 5)
    ]
    receipts = [client.send(command) for command in adds]
    outcomes = [receipt.wait(timeout=120) for receipt in receipts]

    # Two pool processes decide side by side, so the last few decided are not quite the
    # last few sent: exactly the limit's worth is accepted, every other one refused.
    assert Counter((outcome.status, outcome.error) for outcome in outcomes) == {
        ("accepted", None): max_lines,
        ("rejected", "TooManyLines"): 5,
    }
    # More of an item already there is not a new line.
    kept = next(add for add, outcome in zip(adds, outcomes, strict=True) if outcome.accepted)
    more = client.send(AddItem(order, kept.item_id, 2, Decimal("1.00"))).wait(timeout=30)
    assert more.accepted, more

    # The read models follow, within a few sweeps' worth of time.
    assert _wait_rows(pg, order, max_lines) == max_lines
    with pg.connect() as conn:
        item_count = conn.execute(
            select(order_summary.c.item_count).where(order_summary.c.order_id == order)
        ).scalar_one()
    assert item_count == max_lines
    # Each process's peak: a few tens of MB for Python and the libraries, and the caches.
    assert tree_peak_rss_mb(worker.process.pid) < 250


def _wait_rows(pg: Engine, order: str, expected: int, timeout: float = 60) -> int:
    deadline = time.monotonic() + timeout
    while True:
        with pg.connect() as conn:
            rows = int(
                conn.execute(
                    select(func.count()).where(order_lines.c.order_id == order)
                ).scalar_one()
            )
            version = conn.execute(
                select(order_summary.c.version).where(order_summary.c.order_id == order)
            ).scalar_one_or_none()
        if rows == expected and version == expected + 2:
            return rows
        if time.monotonic() > deadline:
            return rows
        time.sleep(0.1)
