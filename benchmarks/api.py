"""``orders bench --api``: the read API under load, beside the same queries on psycopg2.

The read models of a scratch database are filled with 100,000 orders (straight SQL, as
fast as the database inserts). 32 clients (wrk, when the machine has it) ask ``orders
serve`` for the list endpoint and for one order's summary, as fast as it answers; then 32
threads run the very SQL those endpoints run, on psycopg2 connections of their own, for
as long. Both are measured in
the same run on the same machine: the API's rate beside the raw query's, and its p50 and
p99 latency beside the 50 ms target.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

import psycopg2
from sqlalchemy import Connection, event, text

from benchmarks.isolation import child_environment
from benchmarks.measure import percentile
from benchmarks.scratch import libpq_dsn
from readmodels import queries
from store import build_engine

CLIENTS = 32

FILL = [
    """
    INSERT INTO order_summary (order_id, customer_id, status, item_count, units, total,
                               version, created_at, updated_at, paid_at)
    SELECT 'order-' || n, 'customer-' || (n % 10000),
           (ARRAY['created', 'paid', 'cancelled'])[1 + n % 3], 2, 3, n % 500 + 0.50, 4,
           now() - make_interval(secs => n * 30), now() - make_interval(secs => n * 30),
           CASE WHEN n % 3 = 1 THEN now() - make_interval(secs => n * 30) END
    FROM generate_series(1, :orders) AS n
    """,
    """
    INSERT INTO order_lines (order_id, item_id, quantity, unit_price)
    SELECT 'order-' || n, 'item-' || ((n * 7 + k) % 2000), k, 1.25
    FROM generate_series(1, :orders) AS n, generate_series(1, 2) AS k
    """,
    """
    INSERT INTO customer_stats (customer_id, orders_created, orders_paid, orders_cancelled,
                                lifetime_value, last_order_at)
    SELECT 'customer-' || n, 10, 3, 3, n % 997 + 0.25, now()
    FROM generate_series(0, 9999) AS n
    """,
    """
    INSERT INTO product_sales (item_id, units_sold, revenue, orders_count)
    SELECT 'item-' || n, n % 311, n % 977 + 0.75, n % 53 FROM generate_series(0, 1999) AS n
    """,
    """
    INSERT INTO revenue_daily (day, orders_paid, revenue)
    SELECT current_date - n, 90, 4500.00 FROM generate_series(0, 364) AS n
    """,
]
"""Read models of ``orders`` orders (two lines each), 10,000 customers, 2,000 products
and a year of days, for the API's figures and the query-plan test."""


def fill(url: str, orders: int) -> None:
    engine = build_engine(url)
    try:
        with engine.begin() as conn:
            for statement in FILL:
                conn.execute(text(statement), {"orders": orders})
        with engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("ANALYZE"))
    finally:
        engine.dispose()


def api_figures(url: str, env: dict[str, str], orders: int, seconds: float) -> dict[str, float]:
    fill(url, orders)
    ids = [f"order-{random.randint(1, orders)}" for _ in range(1000)]
    endpoints: dict[str, Callable[[], str]] = {
        "list": lambda: "/api/orders?limit=50",
        "summary": lambda: f"/api/orders/{random.choice(ids)}",
    }
    wrk_paths = {
        "list": 'return wrk.format(nil, "/api/orders?limit=50")',
        "summary": f'return wrk.format(nil, "/api/orders/order-" .. math.random(1, {orders}))',
    }
    results: dict[str, float] = {}
    with serving({**env, "ORDERS_DATABASE_URL": url}) as port:
        for name, path in endpoints.items():
            if shutil.which("wrk"):
                rate, p50, p99 = _wrk(port, wrk_paths[name], seconds)
            else:
                rate, latencies = _load(partial(_get_from, port, path), seconds)
                p50, p99 = percentile(latencies, 0.50), percentile(latencies, 0.99)
            results[f"api_{name}_rps"] = rate
            results[f"api_{name}_p50_ms"] = p50
            results[f"api_{name}_p99_ms"] = p99
    statements = _statements(url, ids[0])
    for name, (sql, parameters, probe) in statements.items():
        rate, _ = _raw(url, sql, parameters, probe, ids, seconds)
        results[f"raw_{name}_qps"] = rate
    return results


@contextmanager
def serving(env: dict[str, str]) -> Iterator[int]:
    """``orders serve`` on a free port, until the block ends."""
    cores = os.cpu_count() or 1
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        # A server process per core, as one would run it.
        [sys.executable, "-m", "cli", "serve", "--port", str(port), "--workers", str(cores)],
        env=child_environment(env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                _get(port, "/openapi.json")
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("orders serve did not start") from None
                time.sleep(0.1)
        yield port
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def _wrk(port: int, request: str, seconds: float) -> tuple[float, float, float]:
    """wrk (a load generator in C) against ``port``, ``CLIENTS`` connections: requests
    per second, p50 and p99 in ms. A client in Python would spend the cores the server
    needs: on 2 cores it held the API to a seventh of what wrk measures."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(f"request = function()\n  {request}\nend\n")
    try:
        done = subprocess.run(  # noqa: S603 - wrk, found on the PATH
            [
                shutil.which("wrk") or "wrk",
                "-t2",
                f"-c{CLIENTS}",
                f"-d{max(1, round(seconds))}s",
                "--latency",
                "-s",
                script.name,
                f"http://127.0.0.1:{port}",
            ],
            capture_output=True,
            text=True,
            timeout=seconds + 60,
            check=True,
        )
    finally:
        os.unlink(script.name)
    if "Non-2xx" in done.stdout:
        raise RuntimeError(f"wrk saw errors:\n{done.stdout}")
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", done.stdout)[1])  # type: ignore[index]
    return rate, _wrk_ms(done.stdout, "50%"), _wrk_ms(done.stdout, "99%")


def _wrk_ms(output: str, share: str) -> float:
    found = re.search(rf"{share}\s+([\d.]+)(us|ms|s)\b", output)
    if found is None:
        raise RuntimeError(f"no {share} latency in wrk's output:\n{output}")
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[found[2]]
    return float(found[1]) * scale


_local = threading.local()


def _get_from(port: int, path: Callable[[], str]) -> None:
    _get(port, path())


def _get(port: int, path: str) -> None:
    connection = getattr(_local, "connection", None)
    if connection is None:
        connection = _local.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        body = response.read()
    except (OSError, http.client.HTTPException):
        _local.connection = None
        raise
    if response.status != 200:
        raise RuntimeError(f"GET {path}: {response.status} {body[:200]!r}")
    json.loads(body)


def _load(call: Callable[[], None], seconds: float) -> tuple[float, list[float]]:
    """``CLIENTS`` threads calling ``call`` back to back for ``seconds``: calls per
    second, and every call's latency in ms."""
    latencies: list[list[float]] = [[] for _ in range(CLIENTS)]
    start = threading.Barrier(CLIENTS + 1)
    stop_at = [0.0]

    def client(mine: list[float]) -> None:
        start.wait()
        while True:
            began = time.perf_counter()
            if began >= stop_at[0]:
                return
            call()
            mine.append((time.perf_counter() - began) * 1000)

    threads = [threading.Thread(target=client, args=(mine,)) for mine in latencies]
    for thread in threads:
        thread.start()
    stop_at[0] = time.perf_counter() + seconds
    started = time.perf_counter()
    start.wait()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    every = [latency for mine in latencies for latency in mine]
    return len(every) / elapsed, every


def _statements(url: str, probe_id: str) -> dict[str, tuple[str, dict[str, Any], str | None]]:
    """The SQL each endpoint runs, as SQLAlchemy sends it to psycopg2."""
    engine = build_engine(url)
    found: dict[str, tuple[str, dict[str, Any], str | None]] = {}
    runs: dict[str, Callable[[Connection], Any]] = {
        "list": lambda conn: queries.list_orders(conn, limit=50),
        "summary": lambda conn: queries.show_order(conn, probe_id),
    }
    try:
        with engine.connect() as conn:
            for name, run in runs.items():
                seen: list[tuple[str, dict[str, Any]]] = []

                def record(_c: Any, _cur: Any, sql: str, params: Any, *_: Any) -> None:
                    seen.append((sql, params))  # noqa: B023 - read right after the call

                event.listen(conn, "before_cursor_execute", record)
                run(conn)
                event.remove(conn, "before_cursor_execute", record)
                sql, parameters = seen[-1]
                probe = next((key for key, value in parameters.items() if value == probe_id), None)
                found[name] = (sql, dict(parameters), probe)
    finally:
        engine.dispose()
    return found


def _raw(
    url: str,
    sql: str,
    parameters: dict[str, Any],
    probe: str | None,
    ids: list[str],
    seconds: float,
) -> tuple[float, list[float]]:
    connections = [psycopg2.connect(libpq_dsn(url)) for _ in range(CLIENTS)]
    for connection in connections:
        connection.autocommit = True
    cursors = iter([connection.cursor() for connection in connections])
    local = threading.local()

    def query() -> None:
        cursor = getattr(local, "cursor", None)
        if cursor is None:
            cursor = local.cursor = next(cursors)
        values = dict(parameters)
        if probe is not None:
            values[probe] = random.choice(ids)
        cursor.execute(sql, values)
        cursor.fetchall()

    try:
        return _load(query, seconds)
    finally:
        for connection in connections:
            connection.close()


ROWS: list[tuple[str, str, str | None, str]] = [
    ("api_list_rps", "GET /api/orders (req/s)", "raw_list_qps", ">= 0.5 x raw"),
    ("api_list_p50_ms", "  p50 (ms)", None, ""),
    ("api_list_p99_ms", "  p99 (ms)", None, "<= 50"),
    ("api_summary_rps", "GET /api/orders/{id} (req/s)", "raw_summary_qps", ">= 0.5 x raw"),
    ("api_summary_p50_ms", "  p50 (ms)", None, ""),
    ("api_summary_p99_ms", "  p99 (ms)", None, "<= 50"),
]
"""(key, what it measures, the key it stands beside, the target), as in benchmarks.run."""
