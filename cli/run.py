"""Starting the system's processes: workers, the scheduler, the demo, the benchmark.

``orders worker`` and ``orders beat`` hand this process over to Celery's own command
line (``celery -A workers.app ...``): the same worker either way, and signals reach it
directly. The demo runs its worker inside this process (the embedded mode). The
benchmark is a program of its own (``python -m benchmarks``), shipped with its extra.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import click

from bootstrap import Services, Settings
from bootstrap import migrate as apply_migrations
from cli.common import load_settings, open_services
from cli.walkthrough import ORDER_ID, run_demo
from commands import Command, Outcome
from commands.client import CommandClient, OutcomeTimeout
from commands.transport import COMMANDS_QUEUE, PROJECTIONS_QUEUE
from domain.handler import load_order
from readmodels.queries import show_order


@click.command()
@click.option(
    "--queues",
    default=f"{COMMANDS_QUEUE},{PROJECTIONS_QUEUE}",
    show_default=True,
    help="Comma-separated queues to consume.",
)
@click.option("--concurrency", type=click.IntRange(min=1), default=None, help="Processes.")
@click.option("--pool", type=click.Choice(["prefork", "solo", "threads"]), default="prefork")
@click.option("--loglevel", default="INFO", show_default=True)
@click.option("--hostname", default=None, help="Node name, e.g. commands@%h.")
@click.option("--beat", is_flag=True, help="Also run the periodic sweep (one per cluster).")
@click.option(
    "--batch",
    type=click.IntRange(min=1, max=50),
    default=None,
    help="Decide commands up to N at a time, each batch in one transaction (1-50).",
)
def worker(
    queues: str,
    concurrency: int | None,
    pool: str,
    loglevel: str,
    hostname: str | None,
    beat: bool,
    batch: int | None,
) -> None:
    """Run a Celery worker (the same as `celery -A workers.app worker`)."""
    known = {COMMANDS_QUEUE, PROJECTIONS_QUEUE}
    chosen = [queue.strip() for queue in queues.split(",") if queue.strip()]
    unknown = sorted(set(chosen) - known)
    if not chosen or unknown:
        raise click.BadParameter(f"choose from {sorted(known)}, got {unknown}", param_hint="queues")
    load_settings()  # fail with a clear message before Celery starts
    argv = ["worker", f"--queues={','.join(chosen)}", f"--pool={pool}", f"--loglevel={loglevel}"]
    if concurrency:
        argv.append(f"--concurrency={concurrency}")
    if hostname:
        argv.append(f"--hostname={hostname}")
    if beat:
        argv.append("--beat")
    if batch:
        argv.append(f"--batch={batch}")
    _celery(argv)


@click.command()
@click.option("--loglevel", default="INFO", show_default=True)
def beat(loglevel: str) -> None:
    """Run the scheduler that sends the periodic projection sweep (run exactly one)."""
    load_settings()
    _celery(["beat", f"--loglevel={loglevel}"])


def _celery(argv: list[str]) -> None:
    python = sys.executable
    os.execv(python, [python, "-m", "celery", "-A", "workers.app", *argv])  # noqa: S606


@click.command(context_settings={"ignore_unknown_options": True, "help_option_names": []})
@click.argument("arguments", nargs=-1, type=click.UNPROCESSED)
def bench(arguments: tuple[str, ...]) -> None:
    """Measure throughput, latency, freshness, replay and memory beside their limits
    (`orders bench --help` for its options; needs the `bench` extra)."""
    if importlib.util.find_spec("benchmarks") is None or not _bench_extra_installed():
        raise click.ClickException(
            "the benchmark is not installed here: install the package with its extra, "
            "pip install 'celery-orders[bench]', from a checkout (it ships benchmarks/)"
        )
    python = sys.executable
    os.execv(python, [python, "-m", "benchmarks", *arguments])  # noqa: S606


def _bench_extra_installed() -> bool:
    return all(importlib.util.find_spec(name) is not None for name in ("eventsourcing", "psycopg"))


@click.command()
@click.option("--timeout", type=click.FloatRange(min=1), default=30.0, show_default=True)
def demo(timeout: float) -> None:
    """Run the walkthrough through the whole pipeline.

    Embedded (no ORDERS_BROKER_URL): an in-process worker on Celery's in-memory
    transport. With a Redis broker: enqueue for separately started `orders worker`s.
    """
    settings = load_settings()
    with open_services(migrated=False) as services:
        apply_migrations(services.engine)
        with _pipeline(settings) as client:

            def send_and_wait(command: Command) -> Outcome:
                try:
                    return client.send(command).wait(timeout=timeout)
                except OutcomeTimeout as late:
                    hint = "" if settings.embedded else "; is an `orders worker` running?"
                    raise click.ClickException(f"{late}{hint}") from None

            run_demo(send_and_wait, services.store.load)
        _show_read_model(services, timeout)


def _show_read_model(services: Services, timeout: float) -> None:
    """The dashboards' view of order-001 beside the Order rebuilt from its events."""
    deadline = time.monotonic() + timeout
    # Projection workers may be at it too; running here as well is safe (one at a time).
    while any(result.state in ("busy", "held_back") for result in services.runner.run_all()):
        if time.monotonic() > deadline:
            raise click.ClickException("the read models did not catch up in time")
        time.sleep(0.05)
    with services.engine.connect() as conn:
        view = show_order(conn, ORDER_ID)
    if view is None:
        raise click.ClickException(f"{ORDER_ID} is missing from the read model")
    click.echo("\n=== Read Model ===")
    click.echo(
        f"order_summary: id={view['order_id']}, customer={view['customer_id']}, "
        f"items={view['item_count']}, units={view['units']}, total=${view['total']:.2f}, "
        f"status={view['status']}, version={view['version']}"
    )
    click.echo(f"events:        {load_order(services.store, ORDER_ID)}")


@contextmanager
def _pipeline(settings: Settings) -> Iterator[CommandClient]:
    if not settings.embedded:
        client = CommandClient(settings.broker_url, settings.result_backend)
        try:
            yield client
        finally:
            client.close()
        return
    # The one place the command line starts the Celery runtime in its own process: the
    # embedded mode has nowhere else to run it.
    from workers.app import create_app
    from workers.embedded import embedded_worker

    app = create_app(settings)
    with embedded_worker(app):
        yield CommandClient(app=app)


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True)
def serve(host: str, port: int, workers: int) -> None:
    """Serve the HTTP API (commands in, outcomes out; OpenAPI at /docs).

    It listens on 127.0.0.1 unless told otherwise: put it behind a proxy, or pass
    --host 0.0.0.0 where the network is yours."""
    settings = load_settings()  # fail with a clear message before the server starts
    import uvicorn

    from bootstrap.logs import configure
    from bootstrap.metrics import prepare_multiprocess

    if workers > 1:
        # Several server processes: each writes its counters to files, /metrics sums them.
        prepare_multiprocess()
    configure(settings.log_format)
    uvicorn.run(
        "api.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_config=None,  # uvicorn's loggers go through the root's handler configured above
    )


COMMANDS = [worker, beat, bench, demo, serve]
