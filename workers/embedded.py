"""A worker inside this process, on Celery's in-memory transport: the embedded mode.

Good for the demo and for trying the system out; not for scale, and nothing it has
queued survives the process.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from celery import Celery
from celery.worker import state

from commands.transport import PROJECTIONS_QUEUE, WAKE_PROJECTIONS


@contextmanager
def embedded_worker(app: Celery, shutdown_timeout: float = 10.0) -> Iterator[None]:
    # The solo pool looks tasks up through the default app, from its own thread.
    app.finalize()
    app.set_default()
    # Nothing to hand back to a broker that lives and dies with this process.
    app.conf.worker_soft_shutdown_timeout = 0
    worker = app.WorkController(
        pool="solo",
        concurrency=1,
        hostname="embedded@localhost",
        loglevel=logging.WARNING,
        without_heartbeat=True,
        without_mingle=True,
        without_gossip=True,
    )
    thread = threading.Thread(target=worker.start, name="orders-embedded-worker", daemon=True)
    thread.start()
    try:
        yield
    finally:
        state.should_terminate = 0
        # The consumer waits up to two seconds for a message before it looks at the stop
        # flag, and once more after it has seen it. Two wake-ups, harmless by design,
        # end both waits at once.
        for _ in range(2):
            app.send_task(WAKE_PROJECTIONS, queue=PROJECTIONS_QUEUE, ignore_result=True)
        thread.join(shutdown_timeout)
        state.should_terminate = None
