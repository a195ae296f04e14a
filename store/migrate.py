"""Apply the Alembic migrations. Safe to run twice, and from several processes at once."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, text

MIGRATIONS = Path(__file__).parent / "migrations"
_MIGRATION_LOCK = 0x0_4F52_4445_5253  # "ORDERS": one arbitrary advisory-lock key


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def migrate(engine: Engine, revision: str = "head") -> None:
    config = _config()
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # Workers started together may all migrate; the lock makes them take turns.
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
        config.attributes["connection"] = conn
        command.upgrade(config, revision)


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        revision: str | None = MigrationContext.configure(conn).get_current_revision()
        return revision


def head_revision() -> str | None:
    """The newest revision this code ships."""
    head: str | None = ScriptDirectory.from_config(_config()).get_current_head()
    return head


def schema_problem(engine: Engine) -> str | None:
    """Why this code cannot work on the database, or None when it can: the database
    must be reachable and at the newest revision. Unreachable errors propagate."""
    current, head = current_revision(engine), head_revision()
    if current == head:
        return None
    found = f"at revision {current}" if current else "without this system's tables"
    return f"the database is {found}, this code needs {head}: run `orders migrate`"
