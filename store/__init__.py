"""Persistence: the event store, command log, snapshots and the gap-free global log, on
PostgreSQL (``store.postgres``) or SQLite (``store.sqlite``)."""

from sqlalchemy import Engine

from store.engine import backend, build_engine
from store.event_store import SqlEventStore
from store.log import Backlog, Checkpoint, GlobalLog, RecordedEvent


def open_event_store(engine: Engine) -> SqlEventStore:
    """The event store on ``engine``'s database."""
    return backend(engine).event_store(engine)


def open_global_log(engine: Engine) -> GlobalLog:
    """The global log on ``engine``'s database."""
    return backend(engine).global_log(engine)


__all__ = [
    "Backlog",
    "Checkpoint",
    "GlobalLog",
    "RecordedEvent",
    "SqlEventStore",
    "backend",
    "build_engine",
    "open_event_store",
    "open_global_log",
]
