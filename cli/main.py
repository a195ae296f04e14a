"""The ``orders`` command line: operate the store, run the processes, send commands,
query the read models."""

from __future__ import annotations

import click

from cli import operate, readmodels, retention, run, send


@click.group()
@click.version_option(package_name="celery-orders")
def cli() -> None:
    """Event-sourced orders on Celery, Redis and PostgreSQL."""


for command in [
    send.send,
    *operate.COMMANDS,
    *readmodels.COMMANDS,
    *retention.COMMANDS,
    *run.COMMANDS,
]:
    cli.add_command(command)


def main() -> None:
    cli(prog_name="orders")
