"""The Celery app: ``celery -A workers.app worker`` works as Celery users expect.

Building the app reads the configuration and connects to nothing; connections are made
per worker process when the first task needs them.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from types import FrameType
from typing import Any

import billiard
import billiard.pool
from celery import Celery, bootsteps
from celery.exceptions import SoftTimeLimitExceeded

from bootstrap import Settings
from workers import batch, tasks
from workers.celery_config import celery_config
from workers.readiness import DatabaseReady
from workers.runtime import ProcessServices

log = logging.getLogger(__name__)

EXIT_GRACE = 30.0
"""Seconds a worker stopping after an unrecoverable error gets to stop in order (flush
acknowledgements, requeue, join its pool processes) before it exits anyway."""

MAIN = threading.main_thread()
_BILLIARD = os.path.dirname(billiard.__file__) + os.sep
_WORKLOOP = billiard.pool.Worker.workloop.__code__


def _running_a_job(frame: FrameType | None) -> bool:
    """Whether the pool process this runs in was inside a job when the signal came.

    The pool process's loop (billiard's ``workloop``) calls either its own plumbing
    (wait for a job, acknowledge it, send the result: code in billiard) or the job (code
    in Celery, or this project's batch mode): the frame just below the loop's says which.
    """
    callee = None
    while frame is not None:
        if frame.f_code is _WORKLOOP:
            return callee is not None and not callee.f_code.co_filename.startswith(_BILLIARD)
        callee, frame = frame, frame.f_back
    return True  # not in a pool process's loop: keep billiard's behaviour


def _soft_time_limit(signum: int, frame: FrameType | None) -> None:
    """SIGUSR1 in a pool process: the soft time limit of the job it runs, if any.

    The main process sends it from a timer, and a main process held up (a dead network
    link, a blocking call) fires the timer late, after the job ended and its process
    went back to waiting for the next one. Billiard's own handler raises wherever the
    process is: in the middle of reading a job or writing a result, which kills the
    process and can leave half a message in the pipe, and the main process then stops
    with ``Unrecoverable error: UnpicklingError``. Outside a job it is ignored here."""
    if _running_a_job(frame):
        raise SoftTimeLimitExceeded()
    log.warning("a soft time limit came after its job had ended; ignored")


# Billiard installs ``billiard.pool.soft_timeout_sighandler`` in each pool process after
# Celery's initializer ran (no signal of Celery's comes later), looking the name up then:
# replaced here, before the pool forks, it is the handler every pool process gets.
billiard.pool.soft_timeout_sighandler = _soft_time_limit


class ExitAfterFailure(bootsteps.Step):  # type: ignore[misc]
    """A worker stopping after an unrecoverable error exits within ``EXIT_GRACE``.

    Celery logs ``Unrecoverable error``, then stops in order and joins its pool
    processes; one that never answers (stuck on a dead link, stopped) kept the worker
    alive, consuming nothing, for ever, and supervisors restart only a process that
    exits. Past the grace the pool processes are killed (their commands are not
    acknowledged, so Redis redelivers them and the command log answers a second
    delivery) and the worker exits non-zero. A warm shutdown asked for by a signal
    (exit code 0) still waits for running commands, as long as they take."""

    label = "exit after failure"

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        stop = worker.stop

        def stop_within_grace(
            in_sighandler: bool = False, exitcode: int | str | None = None
        ) -> None:
            # Only a worker that is its process (``celery worker`` runs it on the main
            # thread) ends it; an embedded one (workers/embedded.py) leaves its host be.
            if exitcode and not in_sighandler and threading.current_thread() is MAIN:
                # SystemExit may carry a message instead of a number: that is a failure.
                _exit_after(EXIT_GRACE, worker, exitcode if isinstance(exitcode, int) else 1)
            stop(in_sighandler=in_sighandler, exitcode=exitcode)

        # WorkController.start calls ``self.stop(exitcode=EX_FAILURE)`` on an
        # unrecoverable error: the instance's attribute is what it finds.
        worker.stop = stop_within_grace


def _exit_after(grace: float, worker: Any, exitcode: int) -> None:
    def exit_now() -> None:
        log.critical(
            "the worker is still running %g s after an unrecoverable error; "
            "killing its pool processes and exiting (code %d)",
            grace,
            exitcode,
        )
        for pid in _pool_pids(worker):
            with contextlib.suppress(OSError):  # already gone
                os.kill(pid, signal.SIGKILL)
        os._exit(exitcode)

    # A daemon thread: it must not itself keep the process alive, and it still runs
    # while the main thread waits in interpreter shutdown for pool processes.
    timer = threading.Timer(grace, exit_now)
    timer.daemon = True
    timer.start()


def _pool_pids(worker: Any) -> list[int]:
    processes = getattr(getattr(getattr(worker, "pool", None), "_pool", None), "_pool", None)
    return [p.pid for p in processes or () if getattr(p, "pid", None)]


def create_app(settings: Settings | None = None) -> Celery:
    settings = settings or Settings.from_env()
    app = Celery("orders", set_as_current=False)
    app.conf.update(celery_config(settings))
    # The one seam between Celery and the system: tasks, the consumer and the start-up
    # check find this process's services here.
    app.orders_services = ProcessServices(settings)
    tasks.register(app)
    # `celery -A workers.app worker --batch N` (or `orders worker --batch N`): commands
    # decided N at a time, one transaction each (workers/batch/).
    batch.install(app)
    # Before it takes anything: a worker that cannot serve exits instead of failing
    # every command (workers/readiness.py).
    app.steps["worker"].add(DatabaseReady)
    app.steps["worker"].add(ExitAfterFailure)
    return app


app = create_app()
