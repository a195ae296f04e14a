"""What differs between the databases the store runs on, asked in one place.

``store.engine.backend(bind)`` answers with the ``Backend`` of a connection's database:
``store.postgres`` in production, ``store.sqlite`` embedded. Nothing outside those two
packages and ``store/engine.py`` asks which database it is talking to.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import Connection, Engine, Table

if TYPE_CHECKING:
    from store.event_store import SqlEventStore
    from store.log import GlobalLog

WRITE = {"orders_write": True}
"""Execution options for a transaction that writes: on SQLite it takes the write lock
at BEGIN, so two writers queue instead of failing to upgrade a read lock."""

Row = dict[str, Any]


class Backend(Protocol):
    name: str

    def build_engine(self, url: str, *, pool_size: int | None, **kwargs: Any) -> Engine:
        """An engine tuned for the store on this database."""
        ...

    def event_store(self, engine: Engine) -> SqlEventStore: ...

    def global_log(self, engine: Engine) -> GlobalLog: ...

    def upsert(self, table: Table) -> Any:
        """An INSERT that takes ``on_conflict_do_update`` and ``on_conflict_do_nothing``
        (both databases have them; each dialect builds its own)."""
        ...

    def write_rows(self, conn: Connection, table: Table, rows: Sequence[Row]) -> None:
        """Insert ``rows``, or update those whose key is already there, in bulk."""
        ...

    def try_lock(self, conn: Connection, key: int) -> bool:
        """Take the lock ``key`` for the transaction, or say another holds it."""
        ...

    def wait_lock(self, conn: Connection, key: int) -> None:
        """Wait for the lock ``key`` and keep it for the transaction."""
        ...

    def hold_lock(self, conn: Connection, key: int) -> None:
        """Wait for the lock ``key`` and keep it for the session, until ``release_lock``."""
        ...

    def release_lock(self, conn: Connection, key: int) -> None: ...

    def one_snapshot(self, conn: Connection) -> Connection:
        """``conn`` set so that a transaction on it reads one consistent snapshot."""
        ...
