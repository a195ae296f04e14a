"""The ``orders`` command line: operate the store, send commands, run the demo."""

from __future__ import annotations

import json

import click

from store.migrate import migrate as apply_migrations
from workers.bootstrap import Services, bootstrap
from workers.config import ConfigError, Settings
from workers.demo import print_history, run_demo


def _services() -> Services:
    try:
        return bootstrap(Settings.from_env())
    except ConfigError as error:
        raise click.UsageError(str(error)) from None


@click.group()
@click.version_option(package_name="celery-orders")
def cli() -> None:
    """Event-sourced orders on Celery, Redis and PostgreSQL."""


@cli.command()
def migrate() -> None:
    """Create or upgrade the database schema (safe to run again)."""
    services = _services()
    try:
        apply_migrations(services.engine)
    finally:
        services.close()
    click.echo("database is up to date")


@cli.command()
@click.argument("order_id")
@click.option("--full", is_flag=True, help="Show every data field, not just the first.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines for scripts.")
def history(order_id: str, full: bool, as_json: bool) -> None:
    """Print the event history of ORDER_ID."""
    services = _services()
    try:
        events = services.store.load(order_id)
    finally:
        services.close()
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
def config() -> None:
    """Show the configuration in effect and the variables that set it."""
    try:
        settings = Settings.from_env()
    except ConfigError as error:
        raise click.UsageError(str(error)) from None
    for variable, value, meaning in settings.describe():
        click.echo(f"{variable:<26} {value:<40} {meaning}")


@cli.command()
def demo() -> None:
    """Run the walkthrough: create order-001, add two items, pay, show its history."""
    services = _services()
    try:
        apply_migrations(services.engine)
        run_demo(services.handler.handle, services.store.load)
    finally:
        services.close()


def main() -> None:
    cli(prog_name="orders")


if __name__ == "__main__":  # pragma: no cover
    main()
