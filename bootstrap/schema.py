"""Every table of the system and the one migration history that makes them."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine

from readmodels import tables as read_side
from store import migrate as store_migrations
from store import schema as store_schema
from store.migrate import Migrations

READ_SIDE_VERSIONS = Path(read_side.__file__).parent / "migrations" / "versions"

MIGRATIONS = Migrations(
    locations=(store_migrations.VERSIONS, READ_SIDE_VERSIONS),
    metadata=(store_schema.metadata, read_side.metadata),
)


def migrate(engine: Engine) -> None:
    """Create or upgrade every table (``orders migrate``)."""
    MIGRATIONS.upgrade(engine)


def schema_problem(engine: Engine) -> str | None:
    """Why this code cannot work on ``engine``'s database, or None."""
    return MIGRATIONS.problem(engine)
