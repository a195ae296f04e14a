"""Operating the store: migrate it, read what it recorded, show the configuration."""

from __future__ import annotations

import json

import click

from bootstrap import bootstrap
from bootstrap import migrate as apply_migrations
from bootstrap.health import check as checked
from bootstrap.roles import RolesError, migrate_with_roles, passwords_from
from cli.common import load_settings, open_services, parse_command_id
from cli.walkthrough import print_history


@click.command()
@click.option(
    "--create-roles",
    is_flag=True,
    help="PostgreSQL, as an administrator: also create the roles orders_owner, "
    "orders_writer and orders_reader (passwords from ORDERS_OWNER_PASSWORD, "
    "ORDERS_WRITER_PASSWORD, ORDERS_READER_PASSWORD when set), migrate as orders_owner "
    "and grant each role what it needs (safe to run again).",
)
def migrate(create_roles: bool) -> None:
    """Create or upgrade the database schema (safe to run again)."""
    with open_services(migrated=False) as services:
        if not create_roles:
            apply_migrations(services.engine)
        else:
            try:
                done = migrate_with_roles(services.engine, passwords_from())
            except RolesError as error:
                raise click.ClickException(str(error)) from None
            for line in done:
                click.echo(line)
    click.echo("database is up to date")


@click.command()
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


@click.command()
@click.argument("command_id", callback=parse_command_id)
def status(command_id: str) -> None:
    """Print the recorded outcome of COMMAND_ID from the command log."""
    with open_services() as services:
        outcome = services.store.find_outcome(command_id)
    if outcome is None:
        raise click.ClickException(f"no outcome is recorded for command {command_id} (yet)")
    click.echo(json.dumps(outcome.to_dict(), indent=2))


@click.command("dead-letters")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
def dead_letters(limit: int) -> None:
    """Show the newest messages that could not be read as commands."""
    with open_services() as services:
        letters = services.dead_letters.recent(limit)
    for letter in letters:
        click.echo(f"#{letter.id} {letter.recorded_at:%Y-%m-%d %H:%M:%S} {letter.source}")
        click.echo(f"  reason: {letter.reason}")
        click.echo(f"  body:   {letter.body[:200]}")


@click.command()
def config() -> None:
    """Show the configuration in effect and the variables that set it."""
    for variable, value, meaning in load_settings().describe():
        click.echo(f"{variable:<26} {value:<40} {meaning}")


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def health(as_json: bool) -> None:
    """Check the database, the broker, each read model's lag and the dead letters.

    One line per check; exits 0 when healthy, 1 when degraded, 2 when down."""
    services = bootstrap(load_settings())
    try:
        report = checked(services)
    finally:
        services.close()
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        for entry in report.checks:
            click.echo(f"{entry.state:<9} {entry.name:<28} {entry.detail}")
        click.echo(f"{report.state}")
    raise SystemExit(report.exit_code)


COMMANDS = [migrate, history, status, dead_letters, config, health]
