"""What a projection is: a pure function from an event (and the Order it leaves behind)
and the rows it touches to the new values of those rows.

A projection owns one table. ``keys`` names the rows an event touches (by primary key);
``apply`` returns their new values, ``None`` for a row to delete. The runner reads the
rows, calls ``apply``, writes the result, and moves the checkpoint, all in one
transaction; the projection itself does no I/O.

The Order is passed because an event alone is not enough: ``OrderPaid`` does not carry
the total or the lines, the Order folded from the events up to it does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table

from domain.events import Event
from domain.order import Order

Key = tuple[Any, ...]
Row = dict[str, Any]
Rows = Mapping[Key, Row | None]
Changes = dict[Key, Row | None]


@dataclass(frozen=True)
class Projection:
    name: str
    table: Table
    keys: Callable[[Event, Order], Sequence[Key]]
    apply: Callable[[Event, Order, Rows], Changes]

    @property
    def key_columns(self) -> tuple[str, ...]:
        return tuple(column.name for column in self.table.primary_key.columns)

    def key_of(self, row: Row) -> Key:
        return tuple(row[name] for name in self.key_columns)
