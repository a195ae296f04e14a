"""Batch mode, in the pool process: decide a batch, commit it once, answer every command
(see ``workers.batch``)."""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from celery import Celery
from celery.exceptions import SoftTimeLimitExceeded

from bootstrap import Services
from bootstrap.logs import bind, log_context
from commands import Command, Outcome
from commands.envelope import InvalidEnvelope, decode
from commands.transport import COMMANDS_QUEUE, HANDLE_COMMAND, SENT_AT_HEADER
from store.errors import is_unreachable
from workers.batch.limits import ALONE_HEADER
from workers.poison import reject_wrong_arguments
from workers.tasks import (
    MAX_RETRY_DELAY,
    REUSED,
    decide_message,
    described,
    observe_end_to_end,
    send_wake_up,
)

log = logging.getLogger(__name__)

_APP: Celery | None = None


def serve(app: Celery) -> None:
    """The app whose tasks and services the pool's jobs use (set before the pool forks)."""
    global _APP
    _APP = app


@dataclass
class Item:
    """What the pool process needs of one message (picklable)."""

    task_id: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    retries: int
    sent_at: Any = None
    outcome: Outcome | None = None
    command: Command | None = None
    seconds: float = 0.0
    resend_alone: bool = False
    """No outcome yet: to be sent again at once, for a batch of its own."""
    extra: dict[str, Any] = field(default_factory=dict)


def run_batch(items: list[Item]) -> int:
    """The pool's job: every item answered (or sent again for later); the number of them."""
    assert _APP is not None, "workers.batch.install was not called in this worker"
    task = _APP.tasks[HANDLE_COMMAND]
    services = task.services
    started = time.perf_counter()
    handle_batch(services, items)
    answered = [item for item in items if item.outcome is not None]
    retried = [item for item in items if item.outcome is None and not item.resend_alone]
    alone = [item for item in items if item.outcome is None and item.resend_alone]
    _store_outcomes(task.backend, answered)
    for item in answered:
        observe_end_to_end(services, item.sent_at)
    if any(item.outcome is not None and item.outcome.accepted for item in answered):
        send_wake_up(_APP, services)  # once per batch, after the commit
    if retried:
        _send_again(services, retried)
    if alone:
        _send_alone(alone)
    log.info(
        "batch of %d: %d answered, %d to retry, %d to decide alone, in %.1f ms",
        len(items),
        len(answered),
        len(retried),
        len(alone),
        (time.perf_counter() - started) * 1000,
    )
    return len(items)


def handle_batch(services: Services, items: Sequence[Item]) -> None:
    """Give each item its outcome; an item left without one is to be retried (the
    database was unreachable)."""
    batch: list[Item] = []
    for item in items:
        if len(item.args) != 1 or item.kwargs:
            _alone(item, _wrong_arguments, services, item)
        elif item.retries >= services.settings.db_retries:
            # Out of retries: recorded failed, by the default path.
            _alone(item, decide_message, services, item.args[0], item.task_id, True)
        else:
            try:
                item.command = decode(item.args[0])
                batch.append(item)
            except InvalidEnvelope:
                # Rejected and recorded by the default path, alone (poison is rare).
                _alone(item, decide_message, services, item.args[0], item.task_id, False)
    if batch:
        _decide_batch(services, batch)
    for item in items:
        if item.outcome is not None and item.outcome.command_id != item.task_id:
            _alone(item, _remember_task_id, services, item)


def _decide_batch(services: Services, batch: list[Item]) -> None:
    commands = [item.command for item in batch if item.command is not None]
    started = time.perf_counter()
    try:
        outcomes = services.handler.handle_many(commands)
    except SoftTimeLimitExceeded as late:
        # The transaction was rolled back (or, had the exception come after the commit,
        # the command log has every outcome, and a redelivery answers from it).
        if len(batch) > 1:
            # The time limit is the batch's; which of its commands was slow is unknown,
            # and the others must not fail for it. Each is decided again in a batch of
            # its own, under the whole limit: only a command slow alone is failed.
            log.warning(
                "a batch of %d ran past its soft time limit; each is decided alone", len(batch)
            )
            for item in batch:
                item.resend_alone = True
            return
        # One command past the limit: recorded failed, as the default path does (it
        # takes the soft limit for a bug: workers/tasks.py, decide_message).
        [item] = batch
        assert item.command is not None
        reason = f"the command ran past its time limit: {late}"
        _alone(item, services.handler.fail, item.command, type(late).__name__, reason)
        return
    except Exception as error:
        if is_unreachable(error):
            log.warning("database unreachable; the batch of %d is retried", len(batch))
            return  # no outcomes: every item is sent again
        # A bug in the batch path: nothing of it was committed. Each command alone.
        log.exception("a batch of %d commands failed; deciding each alone", len(batch))
        for item in batch:
            _alone(item, decide_message, services, item.args[0], item.task_id, False)
        return
    seconds = (time.perf_counter() - started) / len(batch)
    for item, outcome in zip(batch, outcomes, strict=True):
        item.outcome, item.seconds = outcome, seconds
        assert item.command is not None
        with log_context(task_id=item.task_id, retries=item.retries or None):
            command = item.command
            bind(
                command_id=command.command_id,
                correlation_id=command.correlation_id or command.command_id,
                order_id=command.order_id,
                command_type=command.command_type,
                status=outcome.status,
            )
            services.metrics.command(command.command_type, outcome.status, seconds)
            log.info("command %s %s", command.command_id, described(outcome))


def _alone(item: Item, decide: Callable[..., Outcome | None], *args: Any) -> None:
    """One item on its own (its own transactions); left unanswered, to be retried, when
    the database is unreachable."""
    with log_context(task_id=item.task_id, retries=item.retries or None):
        try:
            outcome = decide(*args)
        except Exception as error:
            if not is_unreachable(error):
                raise  # the job fails: the whole batch is requeued (consumer.py)
            item.outcome = None
            return
        if outcome is not None:
            item.outcome = outcome


def _wrong_arguments(services: Services, item: Item) -> Outcome:
    outcome = reject_wrong_arguments(services, item.args, item.kwargs, item.task_id)
    services.metrics.command("unknown", outcome.status, None)
    return outcome


def _remember_task_id(services: Services, item: Item) -> None:
    """As ``workers.tasks._also_under_the_command_id``: the command log learns the task
    id, and the outcome goes under the command id too (``_store_outcomes``)."""
    assert item.outcome is not None
    services.store.record_task_id(item.task_id, item.outcome.command_id)
    item.extra["also_under"] = item.outcome.command_id


def _store_outcomes(backend: Any, items: Sequence[Item]) -> None:
    """Every outcome in the result backend, in two round trips: what is there already
    (Celery never replaces a SUCCESS), then the new results, each published too. Retried
    on a connection error under the backend's own retry policy, as the default path's
    ``store_result`` is (both steps can be repeated: the same values are set again);
    raises past it."""
    writes: list[tuple[str, dict[str, Any], bool]] = []
    for item in items:
        assert item.outcome is not None
        result = item.outcome.to_dict()
        # A refusal of a reused id replaces what is stored under this task id (the first
        # command's outcome), as the default path's forget() does.
        writes.append((item.task_id, result, item.outcome.error == REUSED))
        if "also_under" in item.extra:
            writes.append((item.extra["also_under"], result, False))
    if not writes:
        return
    try:
        backend.ensure(_write_results, (backend, writes))
    except Exception:
        # Past the policy's retries: the job fails, and its messages go back to the queue
        # unacknowledged (consumer.py). Their redelivery is answered from the command log
        # and stores the outcomes again, so a producer never waits on an outcome that is
        # only in the command log.
        log.error("could not store the outcomes of a batch of %d", len(items), exc_info=True)
        raise
    for task_id, result, _ in writes:
        log.info("Task %s[%s] succeeded: %s", HANDLE_COMMAND, task_id, json.dumps(result))


def _write_results(backend: Any, writes: Sequence[tuple[str, dict[str, Any], bool]]) -> None:
    client = backend.client
    keys = [backend.get_key_for_task(task_id) for task_id, _, _ in writes]
    with client.pipeline() as pipe:
        for key in keys:
            pipe.get(key)
        current = pipe.execute()
    with client.pipeline() as pipe:
        for key, (task_id, result, replace), stored in zip(keys, writes, current, strict=True):
            if stored is not None and not replace and _is_success(backend, stored):
                continue
            meta = backend._get_result_meta(
                result=result, state="SUCCESS", traceback=None, request=None
            )
            meta["task_id"] = task_id
            value = backend.encode(meta)
            pipe.set(key, value, ex=backend.expires or None)
            pipe.publish(key, value)
        pipe.execute()


def _is_success(backend: Any, stored: Any) -> bool:
    try:
        return bool(backend.decode_result(stored).get("status") == "SUCCESS")
    except Exception:
        return False


def _send_again(services: Services, items: Sequence[Item]) -> None:
    """As ``workers.tasks._retry`` for each item: the same message again, later, with its
    retry count raised. Sent before the originals are acknowledged (a crash in between
    delivers one twice: harmless)."""
    assert _APP is not None
    settings = services.settings
    cap = min(MAX_RETRY_DELAY, settings.visibility_timeout / 10)
    services.metrics.db_retry()
    for item in items:
        delay = min(cap, settings.db_retry_delay * 2**item.retries) * random.uniform(0.5, 1.0)
        headers = {SENT_AT_HEADER: item.sent_at} if item.sent_at is not None else {}
        with log_context(task_id=item.task_id, retries=item.retries or None):
            # The default path's words (workers/tasks.py, _retry), for the same alerts.
            if item.retries < settings.db_retries:
                log.warning("database unreachable, retry %d in %.1f s", item.retries + 1, delay)
            else:
                log.warning(
                    "database unreachable after %d retries; the command will be recorded as "
                    "failed once it is back (next look in %.1f s)",
                    settings.db_retries,
                    delay,
                )
        _APP.send_task(
            HANDLE_COMMAND,
            args=item.args,
            kwargs=item.kwargs,
            task_id=item.task_id,
            retries=item.retries + 1,
            countdown=delay,
            queue=COMMANDS_QUEUE,
            headers=headers,
        )


def _send_alone(items: Sequence[Item]) -> None:
    """Each item again, at once, for a batch of its own (``workers.batch.limits``): its
    retry count unchanged, as nothing was wrong with the database. Sent before the
    originals are acknowledged, as ``_send_again``'s are."""
    assert _APP is not None
    for item in items:
        headers: dict[str, Any] = {ALONE_HEADER: True}
        if item.sent_at is not None:
            headers[SENT_AT_HEADER] = item.sent_at
        _APP.send_task(
            HANDLE_COMMAND,
            args=item.args,
            kwargs=item.kwargs,
            task_id=item.task_id,
            retries=item.retries,
            queue=COMMANDS_QUEUE,
            headers=headers,
        )
