"""PostgreSQL: how the store builds its engine, writes rows in bulk and takes locks."""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import cache
from typing import Any

from sqlalchemy import Connection, Engine, Table, create_engine, make_url, text
from sqlalchemy.dialects import postgresql
from sqlalchemy.sql.compiler import IdentifierPreparer

from store.backend import Row
from store.postgres.driver import execute_pages
from store.postgres.event_store import PostgresEventStore
from store.postgres.global_log import PostgresGlobalLog

UPSERT_PAGE = 1_000
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


class PostgresBackend:
    name = "postgresql"

    def build_engine(self, url: str, *, pool_size: int | None, **kwargs: Any) -> Engine:
        if pool_size is not None:
            kwargs["pool_size"] = pool_size
        # No pool_pre_ping: it costs a round trip per checkout. A connection the server
        # dropped fails its statement, SQLAlchemy discards the pool, and the command is
        # retried (see workers/tasks.py); recycling keeps idle ones from going stale.
        kwargs.setdefault("pool_recycle", 1800)
        kwargs.setdefault("json_deserializer", decode_jsonb)
        parsed = make_url(url)
        if "+" not in parsed.drivername:
            # SQLAlchemy 2.1 takes a bare postgresql:// for psycopg 3 when it is
            # installed (the bench extra installs it), and every command then failed on
            # the store's statements, written for psycopg2.
            parsed = parsed.set(drivername="postgresql+psycopg2")
        return create_engine(parsed, **kwargs)

    def event_store(self, engine: Engine) -> PostgresEventStore:
        return PostgresEventStore(engine, self)

    def global_log(self, engine: Engine) -> PostgresGlobalLog:
        return PostgresGlobalLog(engine)

    def upsert(self, table: Table) -> Any:
        return postgresql.insert(table)

    def write_rows(self, conn: Connection, table: Table, rows: Sequence[Row]) -> None:
        """psycopg2 runs an executemany one statement per row; ``execute_pages`` sends a
        page of rows per statement, which is what makes a rebuild fast."""
        if not rows:
            return
        sql, columns = _upsert_sql(conn.dialect.identifier_preparer, table)
        values = [tuple(row[c] for c in columns) for row in rows]
        execute_pages(conn, sql, values, page_size=UPSERT_PAGE)

    def try_lock(self, conn: Connection, key: int) -> bool:
        acquired = conn.execute(text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": key})
        return bool(acquired.scalar_one())

    def wait_lock(self, conn: Connection, key: int) -> None:
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})

    def hold_lock(self, conn: Connection, key: int) -> None:
        conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": key})

    def release_lock(self, conn: Connection, key: int) -> None:
        conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})

    def one_snapshot(self, conn: Connection) -> Connection:
        return conn.execution_options(isolation_level="REPEATABLE READ")


@cache
def _upsert_sql(quote: IdentifierPreparer, table: Table) -> tuple[str, tuple[str, ...]]:
    columns = tuple(column.name for column in table.columns)
    keys = [column.name for column in table.primary_key.columns]
    updates = ", ".join(
        f"{quote.quote(c)} = EXCLUDED.{quote.quote(c)}" for c in columns if c not in keys
    )
    # Only quoted names of this project's own tables and columns go into the text.
    target = f"{quote.format_table(table)} ({', '.join(map(quote.quote, columns))})"
    conflict = f"({', '.join(map(quote.quote, keys))}) DO UPDATE SET {updates}"
    sql = f"INSERT INTO {target} VALUES %s ON CONFLICT {conflict}"  # noqa: S608
    return sql, columns


BACKEND = PostgresBackend()
