"""Celery tasks: thin. Decode, call the domain's handler, report the outcome.

The return value of ``orders.handle_command`` is the command's ``Outcome`` as a dict:
the result backend hands it to the producer.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Collection
from typing import Any, NoReturn

from celery import Celery, Task
from celery.exceptions import InvalidTaskError, SoftTimeLimitExceeded
from celery.signals import task_internal_error

from bootstrap import Services
from bootstrap.logs import bind, log_context
from commands import Command, Outcome
from commands.envelope import InvalidEnvelope, decode
from commands.transport import (
    HANDLE_COMMAND,
    PROJECTIONS_QUEUE,
    SENT_AT_HEADER,
    SWEEP_PROJECTIONS,
    WAKE_PROJECTIONS,
)
from domain.errors import CommandIdReused
from readmodels.runner import RunResult
from store.errors import is_unreachable
from store.retention import days_ago, prune
from workers.poison import (
    readable_type,
    reject_invalid,
    reject_unrunnable,
    reject_wrong_arguments,
)
from workers.runtime import process_services

log = logging.getLogger(__name__)

MAX_RETRY_DELAY = 30.0
REUSED = CommandIdReused.__name__
HELD_BACK_RETRY_DELAY = 0.25
HELD_BACK_LOOKS = 40
LOOKING_FOR = HELD_BACK_RETRY_DELAY * HELD_BACK_LOOKS
"""Seconds a wake-up goes on looking again (held back, busy); the sweep after that."""
PRUNE = "orders.prune"
"""The retention task (beat sends it daily when ORDERS_RETENTION_DAYS is set)."""


class OrdersTask(Task):  # type: ignore[misc]
    """The base of this system's tasks: ``self.services`` are the process's services."""

    @property
    def services(self) -> Services:
        return process_services(self.app).services


def handle_command(task: OrdersTask, *args: Any, **kwargs: Any) -> dict[str, Any]:
    # The signature takes anything: a message with the wrong arguments is a poison
    # message to record like any other, not a TypeError inside Celery.
    request = task.request
    with log_context(task_id=request.id, retries=request.retries or None):
        return _handle_command(task, args, kwargs)


def _handle_command(task: OrdersTask, args: Any, kwargs: Any) -> dict[str, Any]:
    services, request = task.services, task.request
    try:
        if len(args) == 1 and not kwargs:
            out_of_retries = request.retries >= services.settings.db_retries
            outcome = decide_message(services, args[0], request.id, out_of_retries)
        else:
            outcome = reject_wrong_arguments(services, args, kwargs, request.id)
            services.metrics.command("unknown", outcome.status, None)
        if outcome.command_id and outcome.command_id != request.id:
            _also_under_the_command_id(task, services, outcome)
    except Exception as error:
        if not is_unreachable(error):
            raise
        _retry(task, services, error)
    observe_end_to_end(services, getattr(request, SENT_AT_HEADER, None))
    if outcome.accepted:
        send_wake_up(task.app, services)
    elif outcome.error == REUSED:
        # The result store keeps the first command's outcome under this id, and Celery
        # never overwrites a SUCCESS: the producer of this other command would read
        # that one as its own. Forgotten, the refusal below is stored in its place.
        task.backend.forget(task.request.id)
    return outcome.to_dict()


def _also_under_the_command_id(task: OrdersTask, services: Services, outcome: Outcome) -> None:
    """The message's task id is not its command's id (a producer's library picked it):
    Celery stores the outcome under the task id, where that producer looks; it goes
    under the command id too, where everyone else looks, and the command log learns the
    task id, for ``orders status``. A command id's existing outcome is never replaced
    (Celery keeps a SUCCESS), so a reused id cannot overwrite the first command's."""
    services.store.record_task_id(task.request.id, outcome.command_id)
    try:
        task.backend.store_result(outcome.command_id, outcome.to_dict(), "SUCCESS")
    except Exception:
        log.warning("could not store %s under its command id", outcome.command_id, exc_info=True)


def wake_projections(task: OrdersTask, looks: int = 0) -> None:
    """Bring every read model up to the log's head (reading the log, not the message)."""
    services = task.services
    services.debouncer.release()
    try:
        results = _run_projections(services)
    except Exception as error:
        if not is_unreachable(error):
            raise
        # The sweep would catch up too; retrying keeps the models fresh sooner.
        raise task.retry(exc=error, countdown=1.0, max_retries=5) from error
    states = {result.state for result in results}
    delay = _look_again_in(services, states)
    if (
        states & {"held_back", "busy"}
        and looks * delay < LOOKING_FOR
        and services.debouncer.claim()
    ):
        # Held back: committed events wait behind an older transaction still open. Busy:
        # another run (or a rebuild) has the lock, and may have read the log before the
        # commits that sent this wake-up. Under load a wake-up is on its way anyway; only
        # when none is pending does this one schedule another look, so looks never pile
        # up behind wake-ups.
        task.app.send_task(
            WAKE_PROJECTIONS,
            kwargs={"looks": looks + 1},
            queue=PROJECTIONS_QUEUE,
            countdown=delay,
            ignore_result=True,
        )


def _look_again_in(services: Services, states: Collection[str]) -> float:
    """Seconds until another look. Held back behind a command's transaction, the events
    are readable a moment after it commits, and that commit's own wake-up is this look:
    half a window. Busy, the run holding the lock ends soon: a window."""
    window = services.debouncer.window
    if not window:
        return HELD_BACK_RETRY_DELAY
    return window / 2 if "held_back" in states else window


def sweep_projections(task: OrdersTask) -> None:
    """The periodic catch-up (beat): whatever a lost wake-up missed."""
    _run_projections(task.services)


def prune_old_rows(task: OrdersTask, days: int | None = None) -> dict[str, int]:
    """The daily retention (beat, when ORDERS_RETENTION_DAYS is set): command-log rows,
    with their task ids, and dead letters older than ``days`` (the beat sends the
    setting; the worker's own when a message has none). Events are never deleted. A
    command whose row is pruned is decided again if it is redelivered or resent after
    that (store/retention.py): retention must outlast any producer's resend window."""
    services = task.services
    days = days or services.settings.retention_days
    if days is None:
        log.warning("%s: no days given and ORDERS_RETENTION_DAYS is unset; nothing pruned", PRUNE)
        return {}
    cutoff = days_ago(days)
    deleted = 0

    def count(rows: int) -> None:
        nonlocal deleted
        deleted += rows

    try:
        pruned = prune(
            services.engine, command_log_before=cutoff, dead_letters_before=cutoff, progress=count
        )
    except SoftTimeLimitExceeded:
        # Every batch before this one is committed: the next run goes on from there.
        log.warning(
            "pruning stopped at the time limit after %d rows; the next run goes on", deleted
        )
        return {"deleted": deleted}
    log.info(
        "pruned %d command-log rows, %d task ids and %d dead letters older than %d days",
        pruned.command_log,
        pruned.task_ids,
        pruned.dead_letters,
        days,
    )
    return {
        "command_log": pruned.command_log,
        "task_ids": pruned.task_ids,
        "dead_letters": pruned.dead_letters,
    }


def _run_projections(services: Services) -> list[RunResult]:
    results = services.runner.run_all()
    for result in results:
        services.metrics.projection_events(result.projection, result.applied)
    return results


def decide_message(
    services: Services, envelope: Any, task_id: str | None, out_of_retries: bool
) -> Outcome:
    started = time.perf_counter()
    try:
        command = decode(envelope)
    except InvalidEnvelope as invalid:
        outcome = reject_invalid(services, envelope, invalid, task_id)
        bind(command_id=outcome.command_id or None, status=outcome.status)
        services.metrics.command(readable_type(envelope), outcome.status, None)
        return outcome
    bind(
        command_id=command.command_id,
        correlation_id=command.correlation_id or command.command_id,
        order_id=command.order_id,
        command_type=command.command_type,
    )
    if out_of_retries:
        outcome = _give_up(services, command)
    else:
        try:
            outcome = services.handler.handle(command)
        except Exception as error:
            if is_unreachable(error):
                raise
            # A bug or corrupt stored data: fail this command, keep the worker going.
            log.exception("command %s failed", command.command_id)
            outcome = services.handler.fail(command, type(error).__name__, str(error))
    seconds = time.perf_counter() - started
    services.metrics.command(command.command_type, outcome.status, seconds)
    bind(status=outcome.status, duration_ms=round(seconds * 1000, 3))
    log.info("command %s %s", command.command_id, described(outcome))
    return outcome


def described(outcome: Outcome) -> str:
    if outcome.accepted:
        return f"accepted at version {outcome.version}"
    return f"{outcome.status}: {outcome.error}"


def observe_end_to_end(services: Services, sent_at: Any) -> None:
    """Enqueue to outcome, for producers that say when they sent (``CommandClient``)."""
    if isinstance(sent_at, int | float) and not isinstance(sent_at, bool):
        services.metrics.end_to_end(time.time() - sent_at)


def _give_up(services: Services, command: Command) -> Outcome:
    """The database came back after the command's retries ran out: record it ``failed``.

    Recorded first, published after: an outcome a producer reads is always the command
    log's. Had another delivery of the command (a producer's resend) been decided in
    the meantime, its outcome is already recorded, and that one is returned instead.
    """
    retries = services.settings.db_retries
    reason = f"the event store was unreachable through {retries} retries; nothing was written"
    outcome = services.handler.fail(command, "DatabaseUnavailable", reason)
    log.error("command %s: %s", command.command_id, outcome.message)
    return outcome


def _retry(task: OrdersTask, services: Services, error: Exception) -> NoReturn:
    """Try the message again later; past ``ORDERS_DB_RETRIES`` it is only recorded as
    failed, which needs the database too, so the retries go on until it is back."""
    settings = services.settings
    attempt = task.request.retries
    # Countdowns stay far below the visibility timeout, or Redis redelivers in a loop.
    cap = min(MAX_RETRY_DELAY, settings.visibility_timeout / 10)
    delay = min(cap, settings.db_retry_delay * 2**attempt) * random.uniform(0.5, 1.0)
    reason = " ".join(str(error).split())[:300]
    services.metrics.db_retry()
    if attempt < settings.db_retries:
        log.warning("database unreachable, retry %d in %.1f s: %s", attempt + 1, delay, reason)
    else:
        log.warning(
            "database unreachable after %d retries; the command will be recorded as failed "
            "once it is back (next look in %.1f s): %s",
            settings.db_retries,
            delay,
            reason,
        )
    raise task.retry(exc=error, countdown=delay)


def send_wake_up(app: Celery, services: Services) -> None:
    # The events are committed; a lost wake-up only delays the read models until the
    # next one or the periodic sweep, so a broker hiccup here must not fail the command.
    if not services.debouncer.claim():
        return  # a wake-up is pending and has not read the log yet: it will see ours
    try:
        # Run after the window (readmodels/wake.py): the commits meanwhile join this run.
        countdown = services.debouncer.window or None
        app.send_task(
            WAKE_PROJECTIONS, queue=PROJECTIONS_QUEUE, countdown=countdown, ignore_result=True
        )
    except Exception:
        log.warning("could not wake the projections; the sweep will catch up", exc_info=True)


def _on_internal_error(
    sender: Task | None = None,
    task_id: str | None = None,
    args: Any = None,
    kwargs: Any = None,
    exception: BaseException | None = None,
    **_: Any,
) -> None:
    """A command message Celery refused before the task ran (keyword arguments that are
    not a mapping): record it and tell its producer, like any other poison message.

    Celery sends this signal for any error raised outside the task's body, and most are
    not the message's fault: the result store timing out while the outcome is stored, a
    soft time limit firing late, after the body returned. Those are only logged: the
    command log keeps whatever was decided, and a redelivery or the producer's resend
    is answered from it. Dead-lettered, a valid command would pass for poison."""
    if sender is None or sender.name != HANDLE_COMMAND:
        return
    if not isinstance(exception, InvalidTaskError):
        reason = " ".join(str(exception).split())[:300]
        log.warning(
            "task %s: %s outside the command's handling (%s); not a poison message, so not "
            "dead-lettered: a resend is answered from the command log",
            task_id,
            type(exception).__name__,
            reason,
        )
        return
    try:
        services = process_services(sender.app).services
        outcome = reject_unrunnable(services, args, kwargs, task_id, exception)
        sender.backend.store_result(task_id, outcome.to_dict(), "SUCCESS")
    except Exception:
        log.exception("could not record the refused command message %s", task_id)


task_internal_error.connect(_on_internal_error, weak=False)


def register(app: Celery) -> None:
    options = {"bind": True, "shared": False, "base": OrdersTask}
    # max_retries=None: past ORDERS_DB_RETRIES a command still waits for the database,
    # to be recorded as failed (see _retry).
    app.task(name=HANDLE_COMMAND, max_retries=None, **options)(handle_command)
    app.task(name=WAKE_PROJECTIONS, ignore_result=True, **options)(wake_projections)
    app.task(name=SWEEP_PROJECTIONS, ignore_result=True, **options)(sweep_projections)
    app.task(name=PRUNE, **options)(prune_old_rows)
