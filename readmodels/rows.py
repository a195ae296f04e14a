"""The rows a batch of events touches: read once, changed in memory, written back once.

``TableRows`` works on a database table inside the runner's transaction; ``MemoryRows``
holds a model in memory, for ``verify`` to compare against the tables.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import Connection, Table, tuple_

from readmodels.projections.base import Key, Row
from store import backend
from store.codec import as_utc


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
    backend(conn).write_rows(conn, table, rows)
