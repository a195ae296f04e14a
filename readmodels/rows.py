"""The rows a batch of events touches: read once, changed in memory, written back once.

``TableRows`` works on a database table inside the runner's transaction; ``MemoryRows``
holds a model in memory, for ``verify`` to compare against the tables.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import Connection, Table, tuple_
from sqlalchemy.sql.compiler import IdentifierPreparer

from readmodels.projection import Key, Row
from store.codec import as_utc
from store.driver import execute_pages
from store.engine import upsert_insert

UPSERT_PAGE = 1_000


class MemoryRows:
    def __init__(self) -> None:
        self.rows: dict[Key, Row | None] = {}

    def fetch(self, keys: Iterable[Key]) -> None:
        for key in keys:
            self.rows.setdefault(key, None)

    def get(self, key: Key) -> Row | None:
        return self.rows.get(key)

    def put(self, key: Key, row: Row | None) -> None:
        self.rows[key] = row

    def existing(self) -> dict[Key, Row]:
        return {key: row for key, row in self.rows.items() if row is not None}


class TableRows(MemoryRows):
    def __init__(self, conn: Connection, table: Table) -> None:
        super().__init__()
        self._conn = conn
        self._table = table
        self._key_columns = list(table.primary_key.columns)
        self._changed: set[Key] = set()

    def fetch(self, keys: Iterable[Key]) -> None:
        missing = {key for key in keys if key not in self.rows}
        if not missing:
            return
        key = tuple_(*self._key_columns)
        result = self._conn.execute(self._table.select().where(key.in_(list(missing))))
        for row in result.mappings():
            # SQLite hands datetimes back naive; projections compare them with events'.
            found = {key: as_utc(v) if isinstance(v, datetime) else v for key, v in row.items()}
            self.rows[tuple(found[c.name] for c in self._key_columns)] = found
        for absent in missing - self.rows.keys():
            self.rows[absent] = None

    def put(self, key: Key, row: Row | None) -> None:
        super().put(key, row)
        self._changed.add(key)

    def flush(self) -> None:
        """Write every changed row: upserts for new values, deletes for ``None``."""
        deleted = [key for key in self._changed if self.rows[key] is None]
        upserted = [row for key in self._changed if (row := self.rows[key]) is not None]
        if deleted:
            key = tuple_(*self._key_columns)
            self._conn.execute(self._table.delete().where(key.in_(deleted)))
        write_rows(self._conn, self._table, upserted)
        self._changed.clear()


def write_rows(conn: Connection, table: Table, rows: list[Row]) -> None:
    """Insert ``rows``, or update those whose key is already there."""
    if rows and conn.dialect.name == "postgresql":
        _upsert_pages(conn, table, rows)
    elif rows:
        conn.execute(_upsert(conn, table), rows)


def _upsert_pages(conn: Connection, table: Table, rows: list[Row]) -> None:
    """psycopg2 runs an executemany one statement per row; ``execute_values`` sends a
    page of rows per statement, which is what makes a rebuild fast."""
    sql, columns = _upsert_sql(conn.dialect.identifier_preparer, table)
    values = [tuple(row[c] for c in columns) for row in rows]
    execute_pages(conn, sql, values, page_size=UPSERT_PAGE)


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


def _upsert(conn: Connection, table: Table) -> Any:
    insert = upsert_insert(conn, table)
    keys = [column.name for column in table.primary_key.columns]
    values = {c.name: insert.excluded[c.name] for c in table.columns if c.name not in keys}
    return insert.on_conflict_do_update(index_elements=keys, set_=values)
