"""Retention on the command line: ``orders prune``."""

from __future__ import annotations

from datetime import datetime

import click

from cli.common import open_services
from store.retention import DEFAULT_BATCH, MAX_BATCH, Pruned, count, days_ago
from store.retention import prune as prune_rows

_DAYS = click.IntRange(min=1)


@click.command()
@click.option(
    "--command-log-days",
    type=_DAYS,
    default=None,
    help="Delete command-log rows (and their task ids) older than this many days.",
)
@click.option(
    "--dead-letters-days",
    type=_DAYS,
    default=None,
    help="Delete dead letters older than this many days.",
)
@click.option("--dry-run", is_flag=True, help="Count what would be deleted; delete nothing.")
@click.option(
    "--batch-size",
    type=click.IntRange(1, MAX_BATCH),
    default=DEFAULT_BATCH,
    show_default=True,
    help="Rows deleted per transaction.",
)
def prune(
    command_log_days: int | None, dead_letters_days: int | None, dry_run: bool, batch_size: int
) -> None:
    """Delete old command-log rows and dead letters, in short batches. Events are never
    deleted.

    A command whose command-log row is gone is decided again if it is redelivered or
    resent, no longer answered with its first outcome: keep the command log longer than
    any producer resends a command."""
    if command_log_days is None and dead_letters_days is None:
        raise click.UsageError("give --command-log-days, --dead-letters-days, or both")
    commands_before = None if command_log_days is None else days_ago(command_log_days)
    letters_before = None if dead_letters_days is None else days_ago(dead_letters_days)
    with open_services() as services:
        found = count(
            services.engine,
            command_log_before=commands_before,
            dead_letters_before=letters_before,
        )
        if dry_run:
            pruned = found
        else:
            with click.progressbar(length=found.progress_total, label="pruning") as bar:
                pruned = prune_rows(
                    services.engine,
                    command_log_before=commands_before,
                    dead_letters_before=letters_before,
                    batch_size=batch_size,
                    progress=bar.update,
                )
    _report(pruned, commands_before, letters_before)


def _report(
    pruned: Pruned, commands_before: datetime | None, letters_before: datetime | None
) -> None:
    verb = "would delete" if pruned.dry_run else "deleted"
    if commands_before is not None:
        click.echo(
            f"{verb} {pruned.command_log} command-log row(s) and {pruned.task_ids} task id(s) "
            f"recorded before {commands_before:%Y-%m-%d %H:%M:%S} UTC"
        )
    if letters_before is not None:
        click.echo(
            f"{verb} {pruned.dead_letters} dead letter(s) "
            f"recorded before {letters_before:%Y-%m-%d %H:%M:%S} UTC"
        )


COMMANDS = [prune]
