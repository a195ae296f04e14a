"""The rows a batch of events touches: read once, changed in memory, written back once.

``TableRows`` works on a database table inside the runner's transaction; ``MemoryRows``
holds a model in memory, for ``verify`` to compare against the tables.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from typing import Any

from sqlalchemy import BindParameter, Connection, DateTime, Select, Table, bindparam, tuple_

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
        by_keys = _by_keys(self._table)
        wanted = [key[0] for key in missing] if by_keys.single else list(missing)
        names, times, key_at = by_keys.names, by_keys.times, by_keys.key_at
        for values in self._conn.execute(by_keys.statement, {"keys": wanted}).all():
            found = dict(zip(names, values, strict=True))
            for name in times:
                # SQLite hands datetimes back naive; projections compare them with events'.
                if (moment := found[name]) is not None:
                    found[name] = as_utc(moment)
            self.rows[tuple(values[at] for at in key_at)] = found
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


@dataclass(frozen=True)
class _ByKeys:
    """Reading a table's rows by key, made once per table: a statement built anew per
    batch cost more to build than to run, and a row read as a mapping, value by value,
    more than to fetch."""

    statement: Select[Any]
    single: bool  # a one-column key, bound as plain values
    names: tuple[str, ...]  # the statement's columns, in order
    times: tuple[str, ...]  # those holding datetimes
    key_at: tuple[int, ...]  # where the key's columns are among them


@cache
def _by_keys(table: Table) -> _ByKeys:
    columns = list(table.primary_key.columns)
    keys: BindParameter[Any] = bindparam("keys", expanding=True)
    single = len(columns) == 1
    where = columns[0].in_(keys) if single else tuple_(*columns).in_(keys)
    names = tuple(column.name for column in table.columns)
    return _ByKeys(
        table.select().where(where),
        single,
        names,
        tuple(column.name for column in table.columns if isinstance(column.type, DateTime)),
        tuple(names.index(column.name) for column in columns),
    )


def write_rows(conn: Connection, table: Table, rows: list[Row]) -> None:
    """Insert ``rows``, or update those whose key is already there."""
    backend(conn).write_rows(conn, table, rows)
