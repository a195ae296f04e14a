"""What the run ran on, with two probes of the machine's own speed.

Machines of the same kind differ a lot (a later one ran the same code's rebuild at a
third of an earlier one's rate): the probes say how a run's machine compares, so figures
from different runs are read against each other only after reading these.
"""

from __future__ import annotations

import json
import os
import platform
from typing import Any

import psycopg2

from benchmarks.measure import millis
from benchmarks.scratch import libpq_dsn


def machine(url: str) -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "python_probe_ms": millis(_python_work, repeats=21),
        "pg_round_trip_us": _round_trip_us(url),
    }


def describe(facts: dict[str, Any]) -> str:
    return (
        f"machine: {facts['cpus']} cpus, Python {facts['python']}; "
        f"Python probe {facts['python_probe_ms']:.1f} ms, "
        f"PostgreSQL round trip {facts['pg_round_trip_us']:.0f} us"
    )


def _python_work() -> None:
    # Interpreted loops, small dicts and the json module: what the hot paths are made of.
    rows: list[dict[str, Any]] = [
        {"id": i, "name": f"item-{i}", "price": i * 1.5} for i in range(5_000)
    ]
    json.loads(json.dumps(rows))
    sorted(rows, key=lambda row: -row["id"])


def _round_trip_us(url: str) -> float:
    conn = psycopg2.connect(libpq_dsn(url))
    try:
        with conn.cursor() as cursor:

            def thousand() -> None:
                for _ in range(1_000):
                    cursor.execute("SELECT 1")
                    cursor.fetchall()

            return millis(thousand, repeats=5)  # ms per thousand = us each
    finally:
        conn.close()
