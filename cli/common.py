"""What every ``orders`` subcommand needs: the settings and the services, with errors
turned into messages a user can act on."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click
from sqlalchemy.exc import DBAPIError

from bootstrap import ConfigError, Services, Settings, bootstrap, schema_problem
from commands import InvalidCommand
from commands.fields import command_id as check_command_id


def load_settings() -> Settings:
    try:
        return Settings.from_env()
    except ConfigError as error:
        raise click.UsageError(str(error)) from None


@contextmanager
def open_services(*, migrated: bool = True) -> Iterator[Services]:
    """The services, for one command; with ``migrated``, refuse an unmigrated database."""
    services = bootstrap(load_settings())
    try:
        problem = schema_problem(services.engine) if migrated else None
        if problem is not None:
            raise click.ClickException(problem)
        yield services
    except DBAPIError as error:
        reason = " ".join(str(error.orig).split())
        raise click.ClickException(f"database error: {reason}") from None
    finally:
        services.close()


def parse_command_id(_ctx: Any, _param: Any, value: str) -> str:
    try:
        return check_command_id("COMMAND_ID", value)
    except InvalidCommand as invalid:
        raise click.BadParameter(invalid.reason) from None
