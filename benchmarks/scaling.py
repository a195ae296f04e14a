"""How pipeline throughput scales with worker processes: the no-op task and real
commands through one ``celery worker`` at ``--concurrency`` 1, 2 and 4, one producer."""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial

from benchmarks import pipeline
from benchmarks.measure import interleaved_medians
from commands.client import CommandClient

PROCESSES = (1, 2, 4)
APPS = {"noop": "benchmarks.noop_app", "orders": "workers.app"}


def scaling(env: Mapping[str, str], commands: int, repeats: int) -> dict[str, float]:
    """``<noop|orders>_tps_<n>p``: the median of ``repeats`` runs of ``commands`` each.

    At each size the no-op task and real commands take turns, a fresh worker each run,
    as in the main benchmark: run one after the other, a machine that drifts by a tenth
    over minutes moved their ratio by as much.
    """
    client = CommandClient(env["ORDERS_BROKER_URL"], env["ORDERS_RESULT_BACKEND"])
    results: dict[str, float] = {}
    try:
        for processes in PROCESSES:

            def run(app: str, processes: int = processes) -> float:
                with pipeline.warm_worker(client, app, env, concurrency=processes):
                    return pipeline.throughput(client, commands)

            measures = {
                f"{label}_tps_{processes}p": partial(run, app) for label, app in APPS.items()
            }
            results.update(interleaved_medians(repeats, measures))
    finally:
        client.close()
    return results


def table(results: Mapping[str, float]) -> str:
    lines = [f"{'worker processes':<18} {'no-op (task/s)':>15} {'orders (cmd/s)':>15} {'ratio':>7}"]
    for processes in PROCESSES:
        noop, orders = results[f"noop_tps_{processes}p"], results[f"orders_tps_{processes}p"]
        lines.append(f"{processes:<18} {noop:>15.1f} {orders:>15.1f} {orders / noop:>7.2f}")
    return "\n".join(lines)
