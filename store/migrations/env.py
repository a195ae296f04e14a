"""Alembic environment. ``orders migrate`` passes its own connection in; the plain
``alembic`` command line builds one from ORDERS_DATABASE_URL."""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import Connection

from store.engine import build_engine
from store.schema import metadata


def run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=metadata)
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
