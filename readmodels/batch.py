"""Applying a batch of log events to a projection's rows, stopping at the first failure."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.exc import DBAPIError

from domain.events import Event
from domain.order import Order
from readmodels.order_history import OrderHistory
from readmodels.projections.base import Key, Projection
from readmodels.rows import MemoryRows
from store.errors import is_unreachable
from store.log import RecordedEvent


@dataclass(frozen=True)
class Failure:
    recorded: RecordedEvent
    error: Exception

    def describe(self) -> str:
        return f"{type(self.error).__name__}: {self.error}"


@dataclass(frozen=True, slots=True)
class Prepared:
    """An event of a batch, decoded, with the Order it leaves behind."""

    recorded: RecordedEvent
    event: Event
    order: Order


def prepare(
    batch: Sequence[RecordedEvent], history: OrderHistory
) -> tuple[list[Prepared], Failure | None]:
    """Decode the batch and fold each event's Order, once for every projection fed from
    it; stops at the first event that cannot be, which is returned as the failure.

    A database error is not the event's fault: it propagates, to be retried.
    """
    prepared: list[Prepared] = []
    for recorded in batch:
        try:
            event = recorded.event
            prepared.append(Prepared(recorded, event, history.after(event)))
        except Exception as error:
            if isinstance(error, DBAPIError) or is_unreachable(error):
                raise  # the database's trouble, not the event's: never park for it
            return prepared, Failure(recorded, error)
    return prepared, None


def apply_prepared(
    projection: Projection,
    prepared: Sequence[Prepared],
    rows: MemoryRows,
    failure: Failure | None = None,
) -> tuple[int, Failure | None]:
    """Apply ``prepared`` in order, reading the rows they touch at once; returns how many
    were applied and the failure that stopped them, if any."""
    touched: list[Sequence[Key]] = []
    for index, item in enumerate(prepared):
        try:
            touched.append(projection.keys(item.event, item.order))
        except Exception as error:
            prepared, failure = prepared[:index], Failure(item.recorded, error)
            break
    rows.fetch(key for keys in touched for key in keys)
    for applied, (item, keys) in enumerate(zip(prepared, touched, strict=True)):
        try:
            changes = projection.apply(item.event, item.order, {key: rows.get(key) for key in keys})
        except Exception as error:
            return applied, Failure(item.recorded, error)
        for key, row in changes.items():
            rows.put(key, row)
    return len(prepared), failure


def apply_batch(
    projection: Projection,
    batch: Sequence[RecordedEvent],
    history: OrderHistory,
    rows: MemoryRows,
) -> tuple[int, Failure | None]:
    """``prepare`` and ``apply_prepared`` for one projection."""
    prepared, failure = prepare(batch, history)
    return apply_prepared(projection, prepared, rows, failure)
