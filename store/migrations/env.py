"""Alembic environment. ``store.migrate.Migrations`` passes its connection and the
tables the migrations must match in; the plain ``alembic`` command line builds a
connection from ORDERS_DATABASE_URL."""

from __future__ import annotations

import os
from typing import Any

from alembic import context
from sqlalchemy import Connection

from store.engine import build_engine
from store.schema import only_on


def include(thing: Any, name: str | None, kind: str, reflected: bool, compare_to: Any) -> bool:
    """Leave out what exists on another database only (``store.schema.ONLY``)."""
    only = only_on(thing)
    return only is None or only == context.get_bind().dialect.name


def run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=context.config.attributes.get("target_metadata"),
        include_object=include,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if connection is not None:
    run(connection)
else:
    engine = build_engine(os.environ.get("ORDERS_DATABASE_URL", "sqlite:///orders.db"))
    with engine.begin() as fresh:
        run(fresh)
    engine.dispose()
