"""The composition root: the one place that builds engines, stores and handlers.

Called per process (the CLI, or each prefork worker child), never at import time.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis import Redis
from sqlalchemy import Engine

from bootstrap.config import Settings
from bootstrap.metrics import NoMetrics
from domain.decide import Limits
from domain.handler import CommandHandler, RetryPolicy
from readmodels.order_history import OrderHistory
from readmodels.runner import ProjectionRunner
from readmodels.wake import WakeDebouncer
from store import GlobalLog, SqlEventStore, build_engine, open_event_store, open_global_log
from store.dead_letters import DeadLetterLog
from store.postgres.driver import without_prepared_statements


@dataclass
class Services:
    settings: Settings
    engine: Engine
    read_engine: Engine  # the read models' queries: a replica, or the engine itself
    store: SqlEventStore
    handler: CommandHandler
    reader: GlobalLog
    dead_letters: DeadLetterLog
    runner: ProjectionRunner
    debouncer: WakeDebouncer
    metrics: NoMetrics

    def close(self) -> None:
        if self.read_engine is not self.engine:
            self.read_engine.dispose()
        self.engine.dispose()


def bootstrap(settings: Settings | None = None, metrics: NoMetrics | None = None) -> Services:
    """``metrics``: what the process observes (nothing by default; ``bootstrap.metrics``)."""
    settings = settings or Settings.from_env()
    metrics = metrics or NoMetrics()
    engine = build_engine(settings.database_url, pool_size=settings.db_pool_size)
    if not settings.prepared_statements:
        without_prepared_statements(engine)
    read_engine = (
        build_engine(settings.read_database_url, pool_size=settings.db_pool_size)
        if settings.read_database_url
        else engine
    )
    store = open_event_store(engine)
    handler = CommandHandler(
        store,
        retry=RetryPolicy(max_attempts=settings.conflict_attempts),
        snapshot_every=settings.snapshot_every,
        limits=Limits(max_lines=settings.max_lines),
        on_conflict=metrics.conflict,
    )
    reader = open_global_log(engine)
    redis = _redis(settings.broker_url)
    runner = ProjectionRunner(
        engine,
        reader,
        order_history(store),
        batch_size=settings.projection_batch,
    )
    return Services(
        settings,
        engine,
        read_engine,
        store,
        handler,
        reader,
        DeadLetterLog(engine, on_record=metrics.dead_letter),
        runner,
        WakeDebouncer(redis),
        metrics,
    )


def order_history(store: SqlEventStore) -> OrderHistory:
    return OrderHistory(lambda order_id, version: store.load(order_id, until_version=version))


def _redis(broker_url: str) -> Redis | None:
    """A client for the wake-up debounce when the broker is Redis (connects lazily)."""
    if not broker_url.startswith(("redis://", "rediss://")):
        return None
    return Redis.from_url(broker_url, socket_timeout=2, socket_connect_timeout=2)
