"""``orders bench``: every part, each figure beside its limit or peer, as a table and JSON."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import click
from sqlalchemy.engine import make_url

from benchmarks import api, handler, peer, pipeline, replay, scaling
from benchmarks.isolation import check_database_name, redis_database, scratch_redis
from benchmarks.machine import describe, machine
from benchmarks.measure import interleaved_medians, interleaved_sample_medians, percentile
from benchmarks.scratch import scratch_database
from bootstrap import Settings
from commands.client import CommandClient
from commands.transport import COMMANDS_QUEUE, PROJECTIONS_QUEUE

BOTH_QUEUES = f"{COMMANDS_QUEUE},{PROJECTIONS_QUEUE}"
BATCH_OPTIONS = (f"--batch={handler.BATCH}",)
"""A worker in batch mode, as ``orders worker --batch 20`` starts it (``workers/batch/``)."""


@dataclass(frozen=True)
class Sizes:
    repeats: int
    handler_repeats: int
    handler_commands: int
    peer_commands: int
    e2e_commands: int
    paced_seconds: float
    rebuild_events: int
    replay_lengths: tuple[int, int, int]
    rss_commands: tuple[int, int]

    @classmethod
    def for_run(cls, quick: bool) -> Sizes:
        lengths = (10, 1_000, 10_000)
        if quick:
            return cls(
                repeats=1,
                handler_repeats=1,
                handler_commands=60,
                peer_commands=60,
                e2e_commands=150,
                paced_seconds=2.0,
                rebuild_events=2_000,
                replay_lengths=lengths,
                rss_commands=(300, 600),
            )
        return cls(
            repeats=3,
            handler_repeats=5,
            # A handler run of 6,000 commands lasts a second or more: shorter ones were noise.
            handler_commands=6_000,
            peer_commands=1_500,
            e2e_commands=3_000,
            paced_seconds=10.0,
            rebuild_events=100_000,
            replay_lengths=lengths,
            rss_commands=(10_000, 100_000),
        )


# (key, what it measures, the key it stands beside, the target ratio or limit)
ROWS: list[tuple[str, str, str | None, str]] = [
    ("handler_cps_1t", "handler, 1 thread (cmd/s)", "raw_cps_1t", ""),
    ("handler_cps_4t", "handler, 4 threads (cmd/s)", "raw_cps_4t", ">= 0.75 x raw, >= 4 x peer"),
    (
        "handler_batch_cps_1t",
        f"handler, batches of {handler.BATCH}, 1 thread (cmd/s)",
        "raw_cps_1t",
        "",
    ),
    (
        "handler_batch_cps_4t",
        f"handler, batches of {handler.BATCH}, 4 threads (cmd/s)",
        "raw_cps_4t",
        ">= 2 x raw",
    ),
    ("peer_cps_1t", "eventsourcing, 1 thread (cmd/s)", None, ""),
    ("peer_cps_4t", "eventsourcing, 4 threads (cmd/s)", None, ""),
    ("raw_task_tps", "raw psycopg2 task, same pipeline (cmd/s)", "noop_tps", ""),
    ("e2e_cps", "enqueue to outcome (cmd/s)", "noop_tps", ">= 0.7 x no-op"),
    ("e2e_cps", "  the same, beside the raw psycopg2 task", "raw_task_tps", ""),
    ("e2e_live_cps", "enqueue to every read model (cmd/s)", "noop_tps", ">= 0.7 x no-op"),
    ("e2e_live_cps", "  the same, beside the raw psycopg2 task", "raw_task_tps", ""),
    ("e2e_split_cps", "  the same, commands + projections workers", "noop_tps", ""),
    (
        "e2e_batch_cps",
        f"  the same, worker --batch {handler.BATCH}",
        "noop_tps",
        ">= 1.5 x no-op",
    ),
    ("e2e_batch_cps", "  the same, beside the default worker", "e2e_live_cps", ""),
    ("e2e_p50_ms", "latency p50 at half rate (ms)", None, ""),
    ("e2e_p99_ms", "latency p99 at half rate (ms)", None, ""),
    ("e2e_batch_p50_ms", "  the same p50, --batch (ms)", "e2e_p50_ms", ""),
    ("e2e_batch_p99_ms", "  the same p99, --batch (ms)", "e2e_p99_ms", "<= 2 x default"),
    ("fresh_p50_ms", "accepted to read model p50 (ms)", None, ""),
    ("fresh_p99_ms", "accepted to read model p99 (ms)", None, "<= 250"),
    ("fresh_full_p50_ms", "the same p50 at full load (ms)", None, ""),
    ("fresh_full_p99_ms", "the same p99 at full load (ms)", None, "<= 1,000"),
    ("fresh_batch_full_p99_ms", "  the same, --batch (ms)", "fresh_full_p99_ms", ""),
    ("rebuild_eps", "rebuild all read models (events/s)", None, ">= 20,000"),
    ("rebuild_us_per_event", "rebuild, CPU per event (us)", None, ""),
    (
        "live_proj_us_per_event",
        "live projections, CPU per event (us)",
        "rebuild_us_per_event",
        "<= 2 x rebuild",
    ),
    (
        "live_proj_batch_us_per_event",
        f"  the same, commands worker --batch {handler.BATCH}",
        "rebuild_us_per_event",
        "",
    ),
    ("e2e_split_batch_cps", "  at this rate (cmd/s)", "e2e_split_cps", ""),
    ("replay_ms_10", "load a 10-event order (ms)", None, ""),
    ("replay_ms_1000", "load a 1,000-event order (ms)", "raw_read_ms_1000", "<= 1.5 x raw"),
    ("replay_ms_10000", "load a 10,000-event order (ms)", None, ""),
    ("replay_snap_ms_10000", "the same, from a snapshot (ms)", "replay_ms_10", "<= 1.5 x 10-event"),
    ("worker_rss_mb_10k", "worker memory after the first run (MB)", None, ""),
    (
        "worker_rss_mb_100k",
        "worker memory after the second run (MB)",
        "worker_rss_mb_10k",
        "<= 1.1 x",
    ),
]


def run(
    quick: bool,
    json_path: Path | None,
    echo: Callable[[str], None] = click.echo,
    *,
    only_scaling: bool = False,
    only_api: bool = False,
) -> dict[str, float]:
    settings = Settings.from_env()
    if not settings.broker_url.startswith(("redis://", "rediss://")):
        raise click.UsageError("orders bench needs ORDERS_BROKER_URL to be a Redis URL")
    check_database_name(make_url(settings.database_url).database)
    sizes = Sizes.for_run(quick)
    results: dict[str, float] = {}
    with (
        scratch_redis(settings.broker_url, settings.result_backend) as bench_redis,
        scratch_database(settings.database_url) as url,
    ):
        facts = machine(url)
        echo(describe(facts))
        echo(
            f"working in the scratch database {make_url(url).database} and Redis database "
            f"{redis_database(bench_redis)}, apart from the configured ones"
        )
        # Its workers, producer and results on a Redis database of its own: nothing it
        # enqueues can reach a worker of the configured broker (benchmarks/isolation.py).
        env = {
            "ORDERS_DATABASE_URL": url,
            "ORDERS_BROKER_URL": bench_redis,
            "ORDERS_RESULT_BACKEND": bench_redis,
        }
        parts: list[tuple[str, Callable[[], dict[str, float]]]] = [
            ("command handler and raw psycopg2", lambda: _handler(url, sizes)),
            ("eventsourcing peer", lambda: _peer(url, sizes)),
            ("pipeline through Redis and workers", lambda: _pipeline(url, env, sizes)),
            ("replaying long orders", lambda: _replay(url, sizes)),
            ("rebuilding the read models", lambda: _rebuild(settings.database_url, sizes)),
            ("worker memory", lambda: _memory(url, env, sizes)),
        ]
        if only_scaling:
            scale = partial(scaling.scaling, env, sizes.e2e_commands, sizes.repeats)
            parts = [("scaling with 1, 2 and 4 worker processes", scale)]
        if only_api:
            orders, seconds = (10_000, 2.0) if quick else (100_000, 10.0)
            load = partial(api.api_figures, url, env, orders, seconds)
            parts = [(f"the read API at {orders:,} orders, {api.CLIENTS} clients", load)]
        for label, part in parts:
            started = time.perf_counter()
            echo(f"- {label} ...")
            results.update(part())
            echo(f"  done in {time.perf_counter() - started:.1f} s")
    echo("")
    echo(describe(facts))
    if only_scaling:
        echo(scaling.table(results))
    else:
        echo(table(results, quick, api.ROWS if only_api else ROWS))
    if json_path is not None:
        json_path.write_text(json.dumps({**results, "_machine": facts, "_quick": quick}, indent=2))
    return results


def _handler(url: str, sizes: Sizes) -> dict[str, float]:
    n = sizes.handler_commands
    with ExitStack() as runs:
        measures = {
            "raw_cps_1t": runs.enter_context(handler.raw_runs(url, 1, n)),
            "handler_cps_1t": runs.enter_context(handler.handler_runs(url, 1, n)),
            "raw_cps_4t": runs.enter_context(handler.raw_runs(url, 4, n // 4)),
            "handler_cps_4t": runs.enter_context(handler.handler_runs(url, 4, n // 4)),
            "handler_batch_cps_1t": runs.enter_context(handler.handler_batch_runs(url, 1, n)),
            "handler_batch_cps_4t": runs.enter_context(handler.handler_batch_runs(url, 4, n // 4)),
        }
        return interleaved_medians(sizes.handler_repeats, measures)


def _replay(url: str, sizes: Sizes) -> dict[str, float]:
    return replay.replay(url, sizes.replay_lengths, 5 * sizes.repeats)


def _rebuild(configured_url: str, sizes: Sizes) -> dict[str, float]:
    # A log of exactly that many events: the other parts' events would change the figure.
    with scratch_database(configured_url, "_bench_rebuild") as url:
        return replay.rebuild_figures(url, sizes.rebuild_events)


def _peer(url: str, sizes: Sizes) -> dict[str, float]:
    n, r = sizes.peer_commands, sizes.repeats
    return {
        "peer_cps_1t": peer.peer_cps(url, 1, n, r),
        "peer_cps_4t": peer.peer_cps(url, 4, n // 4, r),
    }


def _pipeline(url: str, env: dict[str, str], sizes: Sizes) -> dict[str, float]:
    client = CommandClient(env["ORDERS_BROKER_URL"], env["ORDERS_RESULT_BACKEND"])
    results: dict[str, float] = {}
    try:

        def throughput_of(key: str, app: str) -> Callable[[], dict[str, float]]:
            def measure() -> dict[str, float]:
                with pipeline.warm_worker(client, app, env, concurrency=2):
                    return {key: pipeline.throughput(client, sizes.e2e_commands)}

            return measure

        def live(
            cps_key: str, fresh_key: str, options: Sequence[str] = ()
        ) -> Callable[[], dict[str, float]]:
            def measure() -> dict[str, float]:
                # The default topology, what `orders worker --concurrency 2` runs (and
                # `options` added, such as `--batch 20`): both queues, commands and
                # projection runs sharing the pool.
                with pipeline.worker(
                    "workers.app", env, queues=BOTH_QUEUES, concurrency=2, options=options
                ):
                    pipeline.prepare_live(client, url)
                    run = pipeline.live_throughput(client, url, sizes.e2e_commands)
                return {
                    cps_key: run.cps,
                    f"{fresh_key}_p50_ms": percentile(run.freshness_ms, 0.50),
                    f"{fresh_key}_p99_ms": percentile(run.freshness_ms, 0.99),
                }

            return measure

        def split(mode: str = "", options: Sequence[str] = ()) -> Callable[[], dict[str, float]]:
            def measure() -> dict[str, float]:
                # Projections in a worker of their own, so that their CPU can be told
                # apart: its processes' CPU from the first send to caught up, per event
                # applied (to every read model: one event, five projections). With a
                # commands worker in batch mode (`options`), the same projections at the
                # higher rate it sustains: more events a wake-up.
                with (
                    pipeline.worker(
                        "workers.app", env, queues=COMMANDS_QUEUE, concurrency=2, options=options
                    ),
                    pipeline.worker(
                        "workers.app", env, queues=PROJECTIONS_QUEUE, concurrency=1
                    ) as projections,
                ):
                    pipeline.prepare_live(client, url)
                    run = pipeline.live_throughput(client, url, sizes.e2e_commands, projections)
                return {
                    f"e2e_split_{mode}cps": run.cps,
                    f"live_proj_{mode}us_per_event": run.cpu_seconds / max(run.events, 1) * 1e6,
                }

            return measure

        # All consume the commands queue, so they take turns a worker at a time. The raw
        # task is the pipeline's limit: the database's work and nothing of ours.
        measures = [
            throughput_of("noop_tps", "benchmarks.noop_app"),
            throughput_of("raw_task_tps", "benchmarks.raw_app"),
            throughput_of("e2e_cps", "workers.app"),
            live("e2e_live_cps", "fresh_full"),
            live("e2e_batch_cps", "fresh_batch_full", BATCH_OPTIONS),
            split(),
            split("batch_", BATCH_OPTIONS),
        ]
        results.update(interleaved_sample_medians(sizes.repeats, measures))
        results.update(_paced(client, url, env, sizes, results["e2e_cps"] / 2))
    finally:
        client.close()
    return results


def _paced(
    client: CommandClient, url: str, env: dict[str, str], sizes: Sizes, per_second: float
) -> dict[str, float]:
    """Latency and freshness at a steady ``per_second``: a commands worker (the default
    one, then one in batch mode, taking turns) and a projections worker."""

    def paced_with(options: Sequence[str]) -> pipeline.Paced:
        with (
            pipeline.worker(
                "workers.app", env, queues=COMMANDS_QUEUE, concurrency=2, options=options
            ),
            pipeline.worker("workers.app", env, queues=PROJECTIONS_QUEUE, concurrency=1),
        ):
            # The throughput runs left thousands of events unprojected (no projection
            # worker ran in some): freshness is measured from a caught-up start.
            pipeline.prepare_live(client, url)
            return pipeline.paced(client, url, per_second, sizes.paced_seconds)

    modes: dict[str, Sequence[str]] = {"": (), "batch_": BATCH_OPTIONS}
    runs: dict[str, list[pipeline.Paced]] = {mode: [] for mode in modes}
    for _ in range(sizes.repeats):
        for mode, options in modes.items():
            runs[mode].append(paced_with(options))
    # Each percentile is the median over the runs: one run caught in a slow spell of
    # this shared 2-core machine (a full run once gave a p50 of 1 s, 34 ms when
    # repeated alone) does not decide the figure alone.
    results: dict[str, float] = {}
    for mode, mode_runs in runs.items():
        for key, share in (("p50", 0.50), ("p99", 0.99)):
            results[f"e2e_{mode}{key}_ms"] = statistics.median(
                percentile(run.latencies_ms, share) for run in mode_runs
            )
            results[f"fresh_{mode}{key}_ms"] = statistics.median(
                percentile(run.freshness_ms, share) for run in mode_runs
            )
    return results


def _memory(url: str, env: dict[str, str], sizes: Sizes) -> dict[str, float]:
    client = CommandClient(env["ORDERS_BROKER_URL"], env["ORDERS_RESULT_BACKEND"])
    first, second = sizes.rss_commands
    try:
        with pipeline.worker("workers.app", env, queues=COMMANDS_QUEUE, concurrency=2) as process:
            pipeline.wait_ready(client)
            pipeline.throughput(client, first)
            after_first = pipeline.rss_mb(process)
            pipeline.throughput(client, second - first)
            after_second = pipeline.rss_mb(process)
    finally:
        client.close()
    return {"worker_rss_mb_10k": after_first, "worker_rss_mb_100k": after_second}


def table(
    results: dict[str, float], quick: bool, rows: list[tuple[str, str, str | None, str]] = ROWS
) -> str:
    lines = [f"{'figure':<42} {'value':>12} {'beside':>12} {'ratio':>7}  target"]
    for key, label, beside, target in rows:
        value = results.get(key, float("nan"))
        other = results.get(beside, float("nan")) if beside else float("nan")
        ratio = value / other if beside and other else float("nan")
        lines.append(
            f"{label:<42} {value:>12.1f} {other:>12.1f} {ratio:>7.2f}  {target}".replace(
                "nan", "  -"
            )
        )
    if quick:
        lines.append("(--quick: small sizes; proves the harness, says little about speed)")
    return "\n".join(lines)


@click.command()
@click.option("--quick", is_flag=True, help="Every part at a small size, in about a minute.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.option(
    "--scaling",
    is_flag=True,
    help="Instead: pipeline throughput with 1, 2 and 4 worker processes, no-op and real.",
)
@click.option(
    "--api",
    "read_api",
    is_flag=True,
    help="Instead: the read API at 100,000 orders, 32 clients, beside raw psycopg2.",
)
def bench(quick: bool, json_path: Path | None, scaling: bool, read_api: bool) -> None:
    """Measure throughput, latency, freshness, replay and memory beside their limits.

    Needs PostgreSQL and Redis (ORDERS_DATABASE_URL, ORDERS_BROKER_URL); it works in a
    scratch database it creates beside the configured one and drops afterwards.
    """
    if scaling and read_api:
        raise click.UsageError("--scaling and --api are two runs: give one")
    run(quick, json_path, only_scaling=scaling, only_api=read_api)


def main() -> None:
    bench(prog_name="orders bench")
