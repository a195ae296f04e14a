"""Alembic migrations, from every package that owns tables. Safe to run twice, and from
several processes at once.

The store keeps its migrations in ``store/migrations/versions``, the read side its own in
``readmodels/migrations/versions``; one history runs through both. The composition root
(``bootstrap.schema``) puts them together with the tables they must match.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, MetaData

from store.engine import backend

ENVIRONMENT = Path(__file__).parent / "migrations"
"""Alembic's environment (``env.py``), shared by every package's migrations."""
VERSIONS = ENVIRONMENT / "versions"
"""The store's own migrations."""

_MIGRATION_LOCK = 0x0_4F52_4445_5253  # "ORDERS": one arbitrary advisory-lock key


@dataclass(frozen=True)
class Migrations:
    """One migration history, kept in ``locations``, for the tables in ``metadata``."""

    locations: Sequence[Path]
    metadata: Sequence[MetaData]

    def config(self) -> Config:
        config = Config()
        config.set_main_option("script_location", str(ENVIRONMENT))
        config.set_main_option("path_separator", "os")
        config.set_main_option("version_locations", os.pathsep.join(map(str, self.locations)))
        config.attributes["target_metadata"] = list(self.metadata)
        return config

    def upgrade(self, engine: Engine, revision: str = "head") -> None:
        config = self.config()
        with engine.begin() as conn:
            # Workers started together may all migrate; the lock makes them take turns.
            backend(conn).wait_lock(conn, _MIGRATION_LOCK)
            config.attributes["connection"] = conn
            command.upgrade(config, revision)

    def head(self) -> str | None:
        """The newest revision this code ships."""
        head: str | None = ScriptDirectory.from_config(self.config()).get_current_head()
        return head

    def problem(self, engine: Engine) -> str | None:
        """Why this code cannot work on the database, or None when it can: the database
        must be reachable and at the newest revision. Unreachable errors propagate."""
        current, head = current_revision(engine), self.head()
        if current == head:
            return None
        found = f"at revision {current}" if current else "without this system's tables"
        return f"the database is {found}, this code needs {head}: run `orders migrate` first"


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        revision: str | None = MigrationContext.configure(conn).get_current_revision()
        return revision
