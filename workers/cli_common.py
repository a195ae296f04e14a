"""What every ``orders`` subcommand needs: the settings and the services, with errors
turned into messages a user can act on."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import click
from sqlalchemy.exc import DBAPIError

from store.migrate import current_revision, head_revision
from workers.bootstrap import Services, bootstrap
from workers.config import ConfigError, Settings


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
        if migrated and current_revision(services.engine) != head_revision():
            raise click.ClickException(
                "the database schema is missing or old: run `orders migrate` first"
            )
        yield services
    except DBAPIError as error:
        reason = " ".join(str(error.orig).split())
        raise click.ClickException(f"database error: {reason}") from None
    finally:
        services.close()
