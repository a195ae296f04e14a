"""The composition root: the one place that builds engines, stores and handlers.

Called per process (the CLI, or each prefork worker child), never at import time.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine

from domain.handler import CommandHandler, RetryPolicy
from store.dead_letters import DeadLetterLog
from store.engine import build_engine
from store.event_store import SqlEventStore
from store.global_log import GlobalLogReader
from workers.config import Settings


@dataclass
class Services:
    settings: Settings
    engine: Engine
    store: SqlEventStore
    handler: CommandHandler
    reader: GlobalLogReader
    dead_letters: DeadLetterLog

    def close(self) -> None:
        self.engine.dispose()


def bootstrap(settings: Settings | None = None) -> Services:
    settings = settings or Settings.from_env()
    engine = build_engine(settings.database_url)
    store = SqlEventStore(engine)
    handler = CommandHandler(
        store,
        retry=RetryPolicy(max_attempts=settings.conflict_attempts),
        snapshot_every=settings.snapshot_every,
    )
    return Services(
        settings, engine, store, handler, GlobalLogReader(engine), DeadLetterLog(engine)
    )
