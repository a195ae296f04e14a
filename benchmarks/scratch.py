"""A scratch database beside the configured one, so a benchmark never touches real data."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from bootstrap import migrate
from store.engine import build_engine


@contextmanager
def scratch_database(url: str, suffix: str = "_bench") -> Iterator[str]:
    """Create ``<database><suffix>`` on the same server, migrated; drop it afterwards."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        raise SystemExit("orders bench needs ORDERS_DATABASE_URL to be a PostgreSQL URL")
    name = f"{parsed.database}{suffix}"
    admin = create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    scratch = parsed.set(database=name).render_as_string(hide_password=False)
    engine = build_engine(scratch)
    migrate(engine)
    engine.dispose()
    try:
        yield scratch
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def libpq_dsn(url: str) -> str:
    """The same database as a libpq connection string, for the raw-driver baselines."""
    parsed = make_url(url)
    parts = {
        "host": parsed.host or "127.0.0.1",
        "port": parsed.port or 5432,
        "dbname": parsed.database,
        "user": parsed.username or "postgres",
    }
    if parsed.password:
        parts["password"] = parsed.password
    return " ".join(f"{key}={value}" for key, value in parts.items())
