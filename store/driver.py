"""The database driver's own cursor, for the few statements where SQLAlchemy's per-row
and per-call work costs more than the database does (the global log, bulk upserts)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError


@contextmanager
def driver_cursor(conn: Connection, name: str | None = None) -> Iterator[Any]:
    """A cursor on ``conn``'s driver connection, inside whatever transaction it is in;
    with a ``name``, a server-side one, which hands rows over a batch at a time.

    Errors come out as SQLAlchemy raises them (``IntegrityError``, ``OperationalError``,
    ...), and a connection the server dropped is invalidated, as SQLAlchemy would.
    """
    driver_error = conn.dialect.loaded_dbapi.Error
    dbapi_connection = conn.connection.dbapi_connection
    assert dbapi_connection is not None
    cursor = dbapi_connection.cursor(name) if name else dbapi_connection.cursor()
    try:
        yield cursor
    except driver_error as error:
        if conn.dialect.is_disconnect(error, dbapi_connection, cursor):
            conn.invalidate(error)
        raise DBAPIError.instance(None, None, error, driver_error) from error
    finally:
        cursor.close()
