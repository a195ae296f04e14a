"""``orders bench --quick`` runs every part and writes every figure: the harness works.
Nothing here is about speed. It runs as a newcomer would run it, with the production
settings and a production worker listening: it leaves production alone."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from benchmarks.run import ROWS
from tests.support.cli import orders
from tests.support.workers import WorkerProcess

LIVE = {"e2e_live_cps", "fresh_full_p99_ms", "live_proj_us_per_event", "rebuild_us_per_event"}
"""The read models live: the system as deployed (issue 16)."""
BATCH = {
    "handler_batch_cps_1t",
    "handler_batch_cps_4t",
    "e2e_batch_cps",
    "e2e_batch_p50_ms",
    "e2e_batch_p99_ms",
    "fresh_batch_full_p99_ms",
    "live_proj_batch_us_per_event",
    "e2e_split_batch_cps",
}
"""Batch mode, ``orders worker --batch N``, beside its references (issue 16)."""

_RECEIVED = re.compile(r"Task (\S+)\[[0-9a-f-]{36}\] received")


def test_the_quick_benchmark_writes_every_figure_and_leaves_production_alone(
    tmp_path: Path,
    postgres_url: str,
    redis_url: str,
    pg: Engine,
    broker: redis.Redis,
    start_worker: Callable[..., WorkerProcess],
) -> None:
    # Production: this test's database and Redis, and a worker of the default topology
    # (both queues) listening there, as the README's newcomer runs it.
    production = start_worker()
    queues_before = _queues(broker)
    env = {"ORDERS_DATABASE_URL": postgres_url, "ORDERS_BROKER_URL": redis_url}
    out = tmp_path / "bench.json"

    result = orders("bench", "--quick", "--json", str(out), env=env, timeout=600)

    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    figures = json.loads(out.read_text())
    expected = {key for key, _, _, _ in ROWS} | {beside for _, _, beside, _ in ROWS if beside}
    expected |= {"raw_cps_1t", "peer_cps_1t", "peer_cps_4t", "fresh_full_p50_ms"}
    assert expected >= LIVE | BATCH
    missing = expected - figures.keys()
    assert not missing, missing
    for key in expected:
        assert isinstance(figures[key], float | int) and math.isfinite(figures[key]), key
        assert figures[key] > 0, key
    assert "handler, 4 threads" in result.stdout  # the table a reader gets
    for label in (
        "enqueue to every read model",
        "full load",
        "live projections, CPU",
        "handler, batches of",
        "worker --batch",
    ):
        assert label in result.stdout, label

    # Nothing of the bench reached production: no task, no event, no queue or result.
    taken = _RECEIVED.findall(production.log(lines=None))
    assert not taken, f"the production worker took {len(taken)} tasks: {sorted(set(taken))}"
    with pg.connect() as conn:
        for table in ("events", "command_log"):
            rows = conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
            assert rows == 0, f"{table}: {rows} rows in the production database"
    assert _queues(broker) == queues_before
    assert production.process.poll() is None, production.log()
    # And the scratch databases are gone.
    assert _databases_beside(postgres_url) == []
    # The probes that let runs on different machines be compared.
    probes = figures["_machine"]
    assert probes["python_probe_ms"] > 0 and probes["pg_round_trip_us"] > 0, probes
    assert "PostgreSQL round trip" in result.stdout


def test_the_quick_scaling_run_writes_a_figure_per_worker_count(
    tmp_path: Path, postgres_url: str, redis_url: str, pg: Engine
) -> None:
    env = {"ORDERS_DATABASE_URL": postgres_url, "ORDERS_BROKER_URL": redis_url}
    out = tmp_path / "scaling.json"

    result = orders("bench", "--scaling", "--quick", "--json", str(out), env=env, timeout=600)

    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    figures = json.loads(out.read_text())
    expected = {f"{app}_tps_{n}p" for app in ("noop", "orders") for n in (1, 2, 4)}
    assert expected <= figures.keys(), expected - figures.keys()
    assert all(math.isfinite(figures[key]) and figures[key] > 0 for key in expected)
    assert "worker processes" in result.stdout


def _queues(broker: redis.Redis) -> dict[str, Any]:
    """Every key of the production Redis database with its contents (lists, the queues,
    in full), but kombu's restore mutex, which an idle worker takes now and then."""
    snapshot: dict[str, Any] = {}
    for raw in broker.scan_iter():
        key = raw.decode()
        if key.endswith("unacked_mutex"):
            continue
        kind = broker.type(raw)
        kind = kind.decode() if isinstance(kind, bytes) else kind
        if kind == "list":
            snapshot[key] = broker.lrange(raw, 0, -1)
        elif kind == "set":
            snapshot[key] = broker.smembers(raw)
        elif kind == "hash":
            snapshot[key] = broker.hgetall(raw)
        else:
            snapshot[key] = kind
    return snapshot


def _databases_beside(url: str) -> list[str]:
    parsed = make_url(url)
    admin = create_engine(parsed.set(database="postgres"))
    try:
        with admin.connect() as conn:
            found = conn.execute(
                text("SELECT datname FROM pg_database WHERE datname LIKE :prefix"),
                {"prefix": f"{parsed.database}\\_bench%"},
            )
            return sorted(found.scalars())
    finally:
        admin.dispose()
