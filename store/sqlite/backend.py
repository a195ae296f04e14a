"""SQLite (the embedded mode): how the store builds its engine, writes rows and locks.

SQLite runs one write transaction at a time: every lock the store asks for is already
held by whoever writes, so they are granted at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Engine, Table, create_engine, event
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import make_url

from store.backend import Row
from store.sqlite.event_store import SqliteEventStore
from store.sqlite.global_log import SqliteGlobalLog


class SqliteBackend:
    name = "sqlite"

    def build_engine(self, url: str, *, pool_size: int | None, **kwargs: Any) -> Engine:
        # pool_size: its connections are files, nothing to keep open.
        kwargs.setdefault("connect_args", {"timeout": 30, "check_same_thread": False})
        engine = create_engine(url, **kwargs)
        in_a_file = make_url(url).database not in (None, "", ":memory:")

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            # Let SQLAlchemy, not the driver, decide where transactions begin.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            if in_a_file:
                cursor.execute("PRAGMA journal_mode=WAL")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(connection: Any) -> None:
            writes = connection.get_execution_options().get("orders_write", False)
            connection.exec_driver_sql("BEGIN IMMEDIATE" if writes else "BEGIN")

        return engine

    def event_store(self, engine: Engine) -> SqliteEventStore:
        return SqliteEventStore(engine, self)

    def global_log(self, engine: Engine) -> SqliteGlobalLog:
        return SqliteGlobalLog(engine)

    def upsert(self, table: Table) -> Any:
        return sqlite.insert(table)

    def write_rows(self, conn: Connection, table: Table, rows: Sequence[Row]) -> None:
        if not rows:
            return
        insert = self.upsert(table)
        keys = [column.name for column in table.primary_key.columns]
        values = {c.name: insert.excluded[c.name] for c in table.columns if c.name not in keys}
        conn.execute(insert.on_conflict_do_update(index_elements=keys, set_=values), list(rows))

    def try_lock(self, conn: Connection, key: int) -> bool:
        return True

    def wait_lock(self, conn: Connection, key: int) -> None:
        pass

    def hold_lock(self, conn: Connection, key: int) -> None:
        pass

    def release_lock(self, conn: Connection, key: int) -> None:
        pass

    def one_snapshot(self, conn: Connection) -> Connection:
        return conn  # a transaction on SQLite always reads one snapshot


BACKEND = SqliteBackend()
