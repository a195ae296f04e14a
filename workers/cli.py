"""The ``orders`` command line: operate the store, run workers, send commands, the demo."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from commands import Command, Outcome
from commands.client import CommandClient, OutcomeTimeout
from commands.transport import COMMANDS_QUEUE, PROJECTIONS_QUEUE
from domain.handler import load_order
from readmodels.queries import show_order
from store.migrate import migrate as apply_migrations
from workers.bootstrap import Services
from workers.cli_common import load_settings, open_services
from workers.cli_readmodels import COMMANDS as READ_MODEL_COMMANDS
from workers.cli_send import parse_command_id, send
from workers.config import Settings
from workers.demo import ORDER_ID, print_history, run_demo


@click.group()
@click.version_option(package_name="celery-orders")
def cli() -> None:
    """Event-sourced orders on Celery, Redis and PostgreSQL."""


cli.add_command(send)
for command in READ_MODEL_COMMANDS:
    cli.add_command(command)


@cli.command()
def migrate() -> None:
    """Create or upgrade the database schema (safe to run again)."""
    with open_services(migrated=False) as services:
        apply_migrations(services.engine)
    click.echo("database is up to date")


@cli.command()
@click.argument("order_id")
@click.option("--full", is_flag=True, help="Show every data field, not just the first.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines for scripts.")
def history(order_id: str, full: bool, as_json: bool) -> None:
    """Print the event history of ORDER_ID."""
    with open_services() as services:
        events = services.store.load(order_id)
    if not events:
        raise click.ClickException(f"order {order_id} has no events")
    if as_json:
        for event in events:
            line = {
                "version": event.version,
                "event_type": event.event_type,
                "event_id": event.event_id,
                "timestamp": event.timestamp.isoformat(),
                "data": event.data(),
                "metadata": event.metadata.to_dict(),
            }
            click.echo(json.dumps(line))
        return
    click.echo(f"Event History for {order_id}:")
    print_history(events, full=full)


@cli.command()
@click.argument("command_id", callback=parse_command_id)
def status(command_id: str) -> None:
    """Print the recorded outcome of COMMAND_ID from the command log."""
    with open_services() as services:
        outcome = services.store.find_outcome(command_id)
    if outcome is None:
        raise click.ClickException(f"no outcome is recorded for command {command_id} (yet)")
    click.echo(json.dumps(outcome.to_dict(), indent=2))


@cli.command("dead-letters")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
def dead_letters(limit: int) -> None:
    """Show the newest messages that could not be read as commands."""
    with open_services() as services:
        letters = services.dead_letters.recent(limit)
    for letter in letters:
        click.echo(f"#{letter.id} {letter.recorded_at:%Y-%m-%d %H:%M:%S} {letter.source}")
        click.echo(f"  reason: {letter.reason}")
        click.echo(f"  body:   {letter.body[:200]}")


@cli.command()
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
def worker(
    queues: str,
    concurrency: int | None,
    pool: str,
    loglevel: str,
    hostname: str | None,
    beat: bool,
) -> None:
    """Run a Celery worker (the same as `celery -A workers.app worker`)."""
    known = {COMMANDS_QUEUE, PROJECTIONS_QUEUE}
    chosen = [queue.strip() for queue in queues.split(",") if queue.strip()]
    unknown = sorted(set(chosen) - known)
    if not chosen or unknown:
        raise click.BadParameter(f"choose from {sorted(known)}, got {unknown}", param_hint="queues")
    load_settings()  # fail with a clear message before Celery starts
    from workers.app import app

    argv = ["worker", f"--queues={','.join(chosen)}", f"--pool={pool}", f"--loglevel={loglevel}"]
    if concurrency:
        argv.append(f"--concurrency={concurrency}")
    if hostname:
        argv.append(f"--hostname={hostname}")
    if beat:
        argv.append("--beat")
    app.worker_main(argv)


@cli.command()
@click.option("--loglevel", default="INFO", show_default=True)
def beat(loglevel: str) -> None:
    """Run the scheduler that sends the periodic projection sweep (run exactly one)."""
    load_settings()
    from workers.app import app

    app.start(["beat", f"--loglevel={loglevel}"])


@cli.command()
@click.option("--quick", is_flag=True, help="Every part at a small size, in about a minute.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.option(
    "--scaling",
    is_flag=True,
    help="Instead: pipeline throughput with 1, 2 and 4 worker processes, no-op and real.",
)
def bench(quick: bool, json_path: Path | None, scaling: bool) -> None:
    """Measure throughput, latency, freshness, replay and memory beside their limits.

    Needs PostgreSQL and Redis (ORDERS_DATABASE_URL, ORDERS_BROKER_URL); it works in a
    scratch database it creates beside the configured one and drops afterwards.
    """
    from benchmarks.run import run

    run(quick, json_path, only_scaling=scaling)


@cli.command()
def config() -> None:
    """Show the configuration in effect and the variables that set it."""
    for variable, value, meaning in load_settings().describe():
        click.echo(f"{variable:<26} {value:<40} {meaning}")


@cli.command()
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
    from workers.app import create_app
    from workers.embedded import embedded_worker

    app = create_app(settings)
    with embedded_worker(app):
        yield CommandClient(app=app)


def main() -> None:
    cli(prog_name="orders")


if __name__ == "__main__":  # pragma: no cover
    main()
