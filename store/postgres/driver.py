"""psycopg2's own cursors and connections, for the few statements where SQLAlchemy's
per-row and per-call work costs more than the database does (the command handler's two
statements, the global log, bulk upserts). Whatever the driver raises comes out as
SQLAlchemy's exceptions, as from any other statement."""

from __future__ import annotations

import os
import threading
import weakref
from collections import deque
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from psycopg2.extras import execute_values
from sqlalchemy import Connection, Engine, event
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import QueuePool


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
    cursor = None
    try:
        # Inside the try: on a connection the server closed, making the cursor fails.
        cursor = dbapi_connection.cursor(name) if name else dbapi_connection.cursor()
        yield cursor
    except driver_error as error:
        dropped = conn.dialect.is_disconnect(error, dbapi_connection, cursor)
        if dropped:
            conn.invalidate(error)
        raise DBAPIError.instance(
            None, None, error, driver_error, connection_invalidated=dropped
        ) from error
    finally:
        if cursor is not None:
            cursor.close()


def execute_pages(
    conn: Connection, sql: str, values: Sequence[tuple[Any, ...]], page_size: int
) -> None:
    """``sql`` (an ``INSERT ... VALUES %s``) for every tuple of ``values``, a page of rows
    per statement: psycopg2's ``executemany`` would send one statement per row."""
    with driver_cursor(conn) as cursor:
        execute_values(cursor, sql, values, page_size=page_size)


PREPARES = "orders_prepares"
"""An engine's execution option: False where the store must not ``PREPARE`` its hot
statements. Behind a pooler in transaction mode (PgBouncer's ``pool_mode =
transaction``) a session's prepared statement stays on the server connection that ran
the ``PREPARE``, and the next transaction may get another one; there they are sent
whole each time, and PostgreSQL plans them each time (docs/scaling.md)."""


def without_prepared_statements(engine: Engine) -> Engine:
    """``engine``, set (in place) never to prepare the store's statements; before a
    store is opened on it (the store's connections read it once)."""
    engine.update_execution_options(**{PREPARES: False})
    return engine


def prepares(bind: Engine | Connection) -> bool:
    return bool(bind.get_execution_options().get(PREPARES, True))


def driver_connections(engine: Engine) -> DriverConnections:
    """The hot-path connections of ``engine``: one set per engine, shared by every store
    on it, so that their number follows the threads at work, not the stores made."""
    with _SHARED_LOCK:
        shared = _SHARED.get(engine)
        if shared is None:
            shared = _SHARED[engine] = DriverConnections(engine)
            event.listen(engine, "engine_disposed", shared.on_dispose)
        return shared


class DriverConnections:
    """Driver connections in autocommit for the hot path's statements, kept out of the pool.

    Checking a connection out of SQLAlchemy's pool and back in around each statement cost
    a fifth of the command handler's throughput at four threads: the pool's lock and
    bookkeeping under contention (docs/performance.md). Connections taken from the pool
    stay out, on a free list that any thread pops from and pushes back to (both atomic),
    switched to autocommit once. They are closed when the engine is disposed.

    A connection the server dropped is discarded with every other one on the list: they
    were opened before the drop too, and would each fail one command in turn. They are
    not recycled by age as the pool's are: one gone stale fails its statement like a
    dropped one, and the command is retried (workers/tasks.py).
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = weakref.ref(engine)  # the engine owns this, not the reverse
        self.dialect = engine.dialect
        self.prepares = prepares(engine)
        self._free: deque[Any] = deque()
        self._owner_pid = os.getpid()
        weakref.finalize(self, _close_all, self._free, self._owner_pid)

    @contextmanager
    def connection(self) -> Iterator[Any]:
        """A pooled connection whose ``driver_connection`` is in autocommit mode."""
        pooled: Any
        try:
            pooled = self._free.pop()
        except IndexError:
            pooled = self._open()
        try:
            yield pooled
        except BaseException as error:
            if pooled.is_valid and _statement_failed(error):
                self._free.append(pooled)  # the statement failed; the connection is fine
                raise
            dropped = not pooled.is_valid
            _discard(pooled)
            if dropped:
                _close_all(self._free, self._owner_pid)
            raise
        if self._room_to_keep():
            self._free.append(pooled)
        else:
            pooled.driver_connection.autocommit = False
            pooled.close()

    def _open(self) -> Any:
        engine = self._engine()
        assert engine is not None, "used after its engine was collected"
        driver_error = self.dialect.loaded_dbapi.Error
        try:
            # The pool hands out the driver's own error when it cannot connect (refused,
            # no slot for the role, a dropped handshake); every caller expects
            # SQLAlchemy's, which say "unreachable" (store/engine.py).
            pooled: Any = engine.raw_connection()
        except driver_error as error:
            raise DBAPIError.instance(
                None, None, error, driver_error, connection_invalidated=True
            ) from error
        pooled.driver_connection.autocommit = True
        return pooled

    def _room_to_keep(self) -> bool:
        # Kept only while fewer connections exist than the pool's size, so the pool can
        # always open another and nobody waits on it while one idles here. Past that,
        # they go back to it. (``overflow()`` takes no lock; ``checkedout()`` does, and
        # under contention that lock cost what this list saves.)
        engine = self._engine()
        pool = engine.pool if engine is not None else None
        return isinstance(pool, QueuePool) and pool.overflow() < 0

    def on_dispose(self, _engine: Engine) -> None:
        _close_all(self._free, self._owner_pid)


def _statement_failed(error: BaseException) -> bool:
    # A database error raised by the statement (a unique violation, say) leaves the
    # connection idle in autocommit and fit for the next; anything else (a time limit
    # raised mid-call) may have left it mid-conversation.
    return isinstance(error, DBAPIError) and not error.connection_invalidated


def _discard(pooled: Any) -> None:
    if pooled.is_valid:  # a dropped one was invalidated where it failed
        pooled.invalidate()
    pooled.close()


def _close_all(free: deque[Any], owner_pid: int) -> None:
    if os.getpid() != owner_pid:
        # A forked child must not touch its parent's connections (see workers/runtime.py).
        free.clear()
        return
    while free:
        _discard(free.pop())


_SHARED: weakref.WeakKeyDictionary[Engine, DriverConnections] = weakref.WeakKeyDictionary()
_SHARED_LOCK = threading.Lock()
