"""Whether a worker process can serve at all, checked once before it takes a message.

Without it, a worker on an unmigrated database took every command and ended each
``failed`` (``relation "command_log" does not exist``), and on a database that does not
exist spent 27 s retrying each. It exits instead, non-zero, saying what to do, so a
supervisor shows the problem rather than a worker that looks ready.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from celery import bootsteps

from bootstrap import Settings, schema_problem
from commands.transport import redacted
from store.engine import build_engine
from store.errors import is_unreachable
from workers.runtime import process_services

log = logging.getLogger(__name__)

EX_CONFIG = 78  # sysexits.h: a configuration error; the process is not worth restarting as is
EX_UNAVAILABLE = 69  # sysexits.h: a service it needs is unavailable
STARTUP_ATTEMPTS = 5


class NotReady(SystemExit):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(code)
        self.reason = reason


def check(settings: Settings, attempts: int = STARTUP_ATTEMPTS, pause: float = 1.0) -> None:
    """Raise ``NotReady`` unless the database is reachable and at the migration head.

    A database that is not up yet gets a few seconds (workers often start with it);
    one that answers with the wrong schema does not.
    """
    where = redacted(settings.database_url)
    engine = build_engine(settings.database_url, pool_size=1)
    try:
        for attempt in range(attempts):
            try:
                problem = schema_problem(engine)
            except Exception as error:
                if not is_unreachable(error):
                    raise
                if attempt + 1 == attempts:
                    reason = " ".join(str(getattr(error, "orig", error)).split())
                    raise NotReady(
                        EX_UNAVAILABLE, f"cannot reach the database at {where}: {reason}"
                    ) from None
                time.sleep(pause)
                continue
            if problem is not None:
                raise NotReady(EX_CONFIG, f"{where}: {problem}")
            return
    finally:
        engine.dispose()


class DatabaseReady(bootsteps.Step):  # type: ignore[misc]
    """Runs ``check`` as the worker is built, before its pool processes exist."""

    label = "database ready"

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        try:
            check(process_services(worker.app).settings)
        except NotReady as not_ready:
            log.critical("this worker cannot serve: %s", not_ready.reason)
            raise
