"""A worker process's services: built on first use, rebuilt in each forked child.

A prefork child inherits its parent's memory; a database connection shared across a
fork corrupts both ends, so each child drops what it inherited and builds its own.
The app keeps one ``ProcessServices`` (``workers.app``); tasks reach it through their
base class (``workers.tasks.OrdersTask``), the consumer and the start-up check through
the app.
"""

from __future__ import annotations

import gc
import logging
import threading
from typing import Any

from celery import Celery
from celery.signals import (
    after_setup_logger,
    after_setup_task_logger,
    worker_init,
    worker_process_init,
    worker_process_shutdown,
    worker_ready,
)

from bootstrap import Services, Settings, bootstrap, logs
from bootstrap.metrics import NoMetrics, exported, prepare_multiprocess
from commands.transport import COMMANDS_QUEUE, PROJECTIONS_QUEUE

log = logging.getLogger(__name__)


class ProcessServices:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._services: Services | None = None
        self.metrics = NoMetrics()
        self._registry: Any = None
        # Strong references: the handlers live as long as the app that made this.
        worker_process_init.connect(self._after_fork, weak=False)
        worker_process_shutdown.connect(self._on_shutdown, weak=False)
        after_setup_logger.connect(self._on_log_setup, weak=False)
        after_setup_task_logger.connect(self._on_log_setup, weak=False)
        if settings.metrics_port is not None:
            worker_init.connect(self._prepare_metrics, weak=False)
            worker_ready.connect(self._serve_metrics, weak=False)

    @property
    def services(self) -> Services:
        if self._services is None:
            with self._lock:
                if self._services is None:
                    self._services = bootstrap(self.settings, self.metrics)
        return self._services

    def _on_log_setup(self, logger: logging.Logger, **_: Any) -> None:
        logs.install(logger.handlers, self.settings.log_format)

    def _prepare_metrics(self, **_: Any) -> None:
        # In the parent, before the pool forks: every child inherits the directory its
        # counters are written to, and the parent serves their sum.
        prepare_multiprocess()
        self.metrics, self._registry = exported(
            lambda: self.services, (COMMANDS_QUEUE, PROJECTIONS_QUEUE)
        )

    def _serve_metrics(self, **_: Any) -> None:
        # Once the pool runs, so its children do not inherit the listening socket.
        from prometheus_client import start_http_server

        port = self.settings.metrics_port
        start_http_server(port or 0, registry=self._registry)
        log.info("metrics served on port %s (/metrics)", port)

    def _after_fork(self, **_: Any) -> None:
        inherited, self._services = self._services, None
        if inherited is not None:
            # Forget the parent's pooled connections without closing the parent's sockets.
            inherited.engine.dispose(close=False)

    def _on_shutdown(self, **_: Any) -> None:
        if self._services is not None:
            self._services.close()
            self._services = None


def process_services(app: Celery) -> ProcessServices:
    """The services of the app's worker process (see ``workers.app.create_app``)."""
    found: ProcessServices = app.orders_services
    return found


def _freeze_start_up_objects(**_: Any) -> None:
    # What the parent built at start-up lives as long as the worker. Frozen, the cycle
    # collector no longer walks it, and in the pool processes forked next it no longer
    # writes to those inherited pages, which would make each a private copy.
    gc.freeze()


worker_init.connect(_freeze_start_up_objects, weak=False)
