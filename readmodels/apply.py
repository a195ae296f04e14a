"""Applying a batch of log events to a projection's rows, stopping at the first failure."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.exc import DBAPIError

from domain.events import Event
from domain.order import Order
from readmodels.order_history import OrderHistory
from readmodels.projection import Key, Projection
from readmodels.rows import MemoryRows
from store.global_log import RecordedEvent


@dataclass(frozen=True)
class Failure:
    recorded: RecordedEvent
    error: Exception

    def describe(self) -> str:
        return f"{type(self.error).__name__}: {self.error}"


def apply_batch(
    projection: Projection,
    batch: Sequence[RecordedEvent],
    history: OrderHistory,
    rows: MemoryRows,
) -> tuple[int, Failure | None]:
    """Apply ``batch`` in order; returns how many events were applied and the failure
    that stopped it, if any. Rows are read for the whole batch at once.

    A database error is not the event's fault: it propagates, to be retried; anything
    else an event causes stops the batch at that event, for the caller to park it.
    """
    prepared: list[tuple[Event, Order, Sequence[Key]]] = []
    failure: Failure | None = None
    for recorded in batch:
        try:
            event = recorded.event
            order = history.after(event)
            prepared.append((event, order, projection.keys(event, order)))
        except DBAPIError:
            raise
        except Exception as error:
            failure = Failure(recorded, error)
            break
    rows.fetch(key for *_, keys in prepared for key in keys)
    for applied, (event, order, keys) in enumerate(prepared):
        try:
            changes = projection.apply(event, order, {key: rows.get(key) for key in keys})
        except Exception as error:
            return applied, Failure(batch[applied], error)
        for key, row in changes.items():
            rows.put(key, row)
    return len(prepared), failure
