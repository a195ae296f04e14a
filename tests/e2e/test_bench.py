"""``orders bench --quick`` runs every part and writes every figure: the harness works.
Nothing here is about speed."""

from __future__ import annotations

import json
import math
from pathlib import Path

from sqlalchemy import Engine

from benchmarks.run import ROWS
from tests.support.cli import orders


def test_the_quick_benchmark_writes_every_figure(
    tmp_path: Path, postgres_url: str, redis_url: str, pg: Engine
) -> None:
    env = {"ORDERS_DATABASE_URL": postgres_url, "ORDERS_BROKER_URL": redis_url}
    out = tmp_path / "bench.json"

    result = orders("bench", "--quick", "--json", str(out), env=env, timeout=600)

    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    figures = json.loads(out.read_text())
    expected = {key for key, _, _, _ in ROWS} | {beside for _, _, beside, _ in ROWS if beside}
    expected |= {"raw_cps_1t", "peer_cps_1t", "peer_cps_4t"}
    missing = expected - figures.keys()
    assert not missing, missing
    for key in expected:
        assert isinstance(figures[key], float | int) and math.isfinite(figures[key]), key
        assert figures[key] > 0, key
    assert "handler, 4 threads" in result.stdout  # the table a reader gets
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
