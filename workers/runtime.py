"""Per-process services for tasks: built on first use, rebuilt in each forked child.

A prefork child inherits its parent's memory; a database connection shared across a
fork corrupts both ends, so each child drops what it inherited and builds its own.
"""

from __future__ import annotations

import gc
import threading
from typing import Any

from celery.signals import worker_init, worker_process_init, worker_process_shutdown

from workers.bootstrap import Services, bootstrap
from workers.config import Settings

_lock = threading.Lock()
_services: Services | None = None
_settings: Settings | None = None


def configure(settings: Settings) -> None:
    """The settings this process's services are built from (set by the app factory)."""
    global _settings
    _settings = settings


def settings() -> Settings:
    """The settings this process runs with."""
    return _settings or Settings.from_env()


def services() -> Services:
    global _services
    if _services is None:
        with _lock:
            if _services is None:
                _services = bootstrap(settings())
    return _services


def _after_fork(**_: Any) -> None:
    global _services
    inherited, _services = _services, None
    if inherited is not None:
        # Forget the parent's pooled connections without closing the parent's sockets.
        inherited.engine.dispose(close=False)


def _on_shutdown(**_: Any) -> None:
    global _services
    if _services is not None:
        _services.close()
        _services = None


def _freeze_start_up_objects(**_: Any) -> None:
    # What the parent built at start-up lives as long as the worker. Frozen, the cycle
    # collector no longer walks it, and in the pool processes forked next it no longer
    # writes to those inherited pages, which would make each a private copy.
    gc.freeze()


worker_init.connect(_freeze_start_up_objects, weak=False)
worker_process_init.connect(_after_fork, weak=False)
worker_process_shutdown.connect(_on_shutdown, weak=False)
