"""A scratch database beside the configured one, so a benchmark never touches real data."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, create_engine, text
from sqlalchemy.engine import make_url

from benchmarks.isolation import SCRATCH_NAME, IsolationError, check_database_name
from bootstrap import migrate
from store.engine import build_engine

MARK = "orders bench scratch database"
"""The comment on every database the bench makes: only those does it ever drop."""


@contextmanager
def scratch_database(url: str, suffix: str = "_bench") -> Iterator[str]:
    """Create ``<database><suffix>`` on the same server, migrated; drop it afterwards."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        raise SystemExit("orders bench needs ORDERS_DATABASE_URL to be a PostgreSQL URL")
    check_database_name(parsed.database)
    name = f"{parsed.database}{suffix}"
    if not SCRATCH_NAME.search(suffix) or name == parsed.database:
        raise IsolationError(f"not a scratch database name: {name!r}")
    admin = create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        _refuse_unless_ours(conn, name)
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
        conn.execute(text(f"COMMENT ON DATABASE \"{name}\" IS '{MARK}'"))
    scratch = parsed.set(database=name).render_as_string(hide_password=False)
    engine = build_engine(scratch)
    migrate(engine)
    engine.dispose()
    try:
        yield scratch
    finally:
        with admin.connect() as conn:
            _refuse_unless_ours(conn, name)
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _refuse_unless_ours(conn: Connection, name: str) -> None:
    """A database of the scratch name that the bench did not make is someone's data."""
    found = conn.execute(
        text(
            "SELECT coalesce(shobj_description(oid, 'pg_database'), '') "
            "FROM pg_database WHERE datname = :name"
        ),
        {"name": name},
    ).first()
    if found is not None and found[0] != MARK:
        raise IsolationError(
            f"a database named {name!r} exists and is not a benchmark's scratch database "
            f"(no comment {MARK!r}): the bench would drop it, so it does not run. If it is "
            f'a leftover of an older bench, drop it by hand: DROP DATABASE "{name}"'
        )


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
