"""Engines tuned for the event store. Built by the composition root, never at import."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Connection, Engine, Table, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import (
    DBAPIError,
    DisconnectionError,
    InterfaceError,
    OperationalError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout

WRITE = {"orders_write": True}
"""Execution options for a transaction that writes: on SQLite it takes the write lock
at BEGIN, so two writers queue instead of failing to upgrade a read lock."""


UNREACHABLE = (OperationalError, InterfaceError, DisconnectionError, PoolTimeout)
"""Errors that mean the database cannot serve now: it cannot be reached, it dropped the
connection, it has no connection slot left (``too many connections``), or the pool has
none free. Worth waiting out, never the fault of the command or event at hand.

Every path that touches the database sees SQLAlchemy's exceptions only: the driver's
own are translated where driver connections are taken (``store/driver.py``)."""


def is_unreachable(error: BaseException) -> bool:
    """Whether ``error`` says the database cannot serve now (see ``UNREACHABLE``)."""
    if isinstance(error, UNREACHABLE):
        return True
    return isinstance(error, DBAPIError) and error.connection_invalidated


def upsert_insert(conn: Connection, table: Table) -> Any:
    """An INSERT with ON CONFLICT clauses, in the dialect of ``conn`` (both support them)."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(table)


def build_engine(url: str, *, pool_size: int | None = None, **kwargs: Any) -> Engine:
    """``pool_size``: connections kept open for PostgreSQL (SQLAlchemy's default, 5,
    when None); SQLite ignores it, its connections are files."""
    if make_url(url).get_backend_name() == "sqlite":
        return _sqlite_engine(url, **kwargs)
    if pool_size is not None:
        kwargs["pool_size"] = pool_size
    # No pool_pre_ping: it costs a round trip per checkout. A connection the server
    # dropped fails its statement, SQLAlchemy discards the pool, and the command is
    # retried (see workers/tasks.py); recycling keeps idle ones from going stale.
    kwargs.setdefault("pool_recycle", 1800)
    kwargs.setdefault("json_deserializer", decode_jsonb)
    return create_engine(url, **kwargs)


_DECODER = json.JSONDecoder()


def decode_jsonb(text: str) -> Any:
    """``json.loads`` for what PostgreSQL prints of a jsonb value: one document with
    nothing around it. ``json.loads`` first matches whitespace at both ends with a
    regular expression, which is half its cost on small payloads; ``raw_decode`` goes
    straight to the C scanner. Replaying or rebuilding decodes a payload per event.
    Anything else (a ``json`` column keeps its spaces) takes the general path."""
    try:
        value, end = _DECODER.raw_decode(text)
    except json.JSONDecodeError:
        return json.loads(text)
    return value if end == len(text) else json.loads(text)


def _sqlite_engine(url: str, **kwargs: Any) -> Engine:
    kwargs.setdefault("connect_args", {"timeout": 30, "check_same_thread": False})
    engine = create_engine(url, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, decide where transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        if make_url(url).database not in (None, "", ":memory:"):
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        writes = connection.get_execution_options().get("orders_write", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if writes else "BEGIN")

    return engine
