"""The global log: every event of every stream in commit order, without gaps.

This module holds what subscribers (the projections) see of it; each backend reads it
its own way (``store.postgres.global_log``, ``store.sqlite.global_log``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Generator
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property

from sqlalchemy import Connection, Engine

from domain.events import Event
from domain.upcasting import StoredEvent
from store.codec import decode


@dataclass(frozen=True, order=True)
class Checkpoint:
    """Where a subscriber stands: after the event at ``position`` of the transaction
    ``transaction_id`` (always 0 on SQLite, whose position order is commit order)."""

    transaction_id: int = 0
    position: int = 0


@dataclass(frozen=True)
class RecordedEvent:
    """One entry of the log. ``event`` is decoded on first use, so an entry that cannot
    be decoded raises there, for its subscriber to park, not in the middle of a batch."""

    checkpoint: Checkpoint
    aggregate_id: str
    stored: StoredEvent = field(repr=False, compare=False)

    @property
    def event_id(self) -> str:
        return self.stored.event_id

    @property
    def event_type(self) -> str:
        return self.stored.event_type

    @cached_property
    def event(self) -> Event:
        [event] = decode(self.aggregate_id, [self.stored])
        return event


@dataclass(frozen=True)
class Backlog:
    """What a subscriber at some checkpoint has not read yet, held-back rows included."""

    events: int
    oldest: datetime | None


class GlobalLog(ABC):
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def read(self, after: Checkpoint, limit: int = 500) -> list[RecordedEvent]:
        """Up to ``limit`` events committed after ``after``, in commit order."""
        with self._engine.connect() as conn:
            return self.read_in(conn, after, limit)

    @abstractmethod
    def read_in(self, conn: Connection, after: Checkpoint, limit: int) -> list[RecordedEvent]:
        """The same, inside the caller's transaction (a projection's, say)."""

    @abstractmethod
    def batches_in(
        self, conn: Connection, after: Checkpoint, size: int
    ) -> Generator[list[RecordedEvent], None, None]:
        """Everything ``read_in`` returns after ``after``, ``size`` events at a time, for a
        pass over the whole log (rebuild, verify). ``conn`` must be in a transaction, and
        the caller must close the iterator before leaving it (``contextlib.closing``)."""

    @abstractmethod
    def holds_back(self, conn: Connection, after: Checkpoint) -> bool:
        """Whether rows after ``after`` exist that ``read`` does not return yet (their
        transactions, or older ones, are still open)."""

    @abstractmethod
    def backlog(self, conn: Connection, after: Checkpoint) -> Backlog: ...

    @abstractmethod
    def head(self, conn: Connection) -> Checkpoint:
        """The newest row's checkpoint, committed or held back alike."""

    @abstractmethod
    def checkpoint_of(self, conn: Connection, aggregate_id: str, version: int) -> Checkpoint | None:
        """Where the event ``version`` of the stream ``aggregate_id`` stands in the log."""
