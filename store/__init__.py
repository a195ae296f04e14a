"""Persistence: the event store, command log, snapshots and the gap-free global reader."""

from store.engine import build_engine
from store.event_store import SqlEventStore
from store.global_log import Checkpoint, GlobalLogReader, RecordedEvent
from store.migrate import migrate

__all__ = [
    "Checkpoint",
    "GlobalLogReader",
    "RecordedEvent",
    "SqlEventStore",
    "build_engine",
    "migrate",
]
