"""Batch mode: ``orders worker --batch N`` decides commands N at a time, one commit each.

Commands stay one Celery message each: producers and the wire contract do not change.
Only the worker does. Its ``orders.handle_command`` task gets a strategy of its own
(the consumer's per-task hook): a received message is not handed to the pool alone but
buffered, and the buffer goes to a pool process as one job when it holds N messages, or
as soon as a pool process is free (``FLUSH_AFTER`` seconds after, so that messages read
together go together): a lone command waits for nothing, and under load the commands
that arrive while every process is busy make the next batch (group commit).

In the pool process (``run_batch``) each message is validated as the default path does
it (``commands.envelope.decode``; ``workers/poison.py`` for what is not a command), the
valid commands are decided by ``CommandHandler.handle_many`` (their streams read in one
round trip, their writes in one transaction with a savepoint each, one commit), every
outcome is stored in the result backend under its task id (and its command id) in one
pipeline, and the read models get one wake-up. Only then are the messages acknowledged,
by the consumer, when the job returns.

What can go wrong, and what happens then:

- a lost race, a redelivery, a rejection: that command only (``handle_many``);
- the database unreachable: nothing of the batch was committed, and every command not
  yet answered is sent again with a countdown and its retry count raised, as the default
  path's ``task.retry`` does; past ``ORDERS_DB_RETRIES`` each is recorded failed once the
  database is back. Never a permanent ``failed`` for an outage;
- a bug in the batch path (anything else raised by ``handle_many``): its transaction is
  rolled back and each command is decided alone, by the default path;
- the pool process killed, or the batch past its hard time limit: the messages are
  rejected and requeued (``task_reject_on_worker_lost``); the whole worker killed: they
  are unacknowledged and Redis redelivers them after the visibility timeout. Either way
  the command log answers whatever had been committed, and nothing is written twice.

``install(app)`` adds the ``--batch`` option to ``celery worker``; ``workers.app`` has it,
so ``celery -A workers.app worker --batch N`` and ``orders worker --batch N`` are the same.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import click
from celery import Celery, bootsteps, signals
from celery.app import trace
from celery.exceptions import SoftTimeLimitExceeded
from celery.utils.imports import symbol_by_name
from celery.worker.request import create_request_cls
from celery.worker.state import task_ready, task_reserved
from celery.worker.strategy import hybrid_to_proto2, proto1_to_proto2
from kombu.asynchronous.timer import to_timestamp

from bootstrap import Services
from bootstrap.logs import bind, log_context
from commands import Command, Outcome
from commands.envelope import InvalidEnvelope, decode
from commands.transport import COMMANDS_QUEUE, HANDLE_COMMAND, SENT_AT_HEADER
from store.errors import is_unreachable
from workers.poison import reject_wrong_arguments
from workers.tasks import (
    MAX_RETRY_DELAY,
    REUSED,
    OrdersTask,
    _decide,
    _described,
    _observe_end_to_end,
    _wake_projections,
    handle_command,
)

log = logging.getLogger(__name__)

MAX_BATCH = 50
"""Each command of a batch that writes is a subtransaction until the commit; past 64 in
one transaction PostgreSQL's snapshots slow down for every session (store/postgres/batch.py)."""
FLUSH_AFTER = 0.001
"""Seconds a part-filled batch waits for more messages once a pool process is free."""
PREFETCH_BATCHES = 2
"""Batches each pool process may have in hand: one being decided, the next one filling."""

_APP: Celery | None = None


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
    extra: dict[str, Any] = field(default_factory=dict)


# -- the worker side: buffer, flush, acknowledge -------------------------------------------


class BatchCommandTask(OrdersTask):
    """``orders.handle_command`` taken in batches (see the module). Called directly (an
    eager ``apply``), it runs the default path."""

    name = HANDLE_COMMAND
    max_retries = None
    batch_size = 20
    flush_after = FLUSH_AFTER

    def run(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return handle_command(self, *args, **kwargs)

    def start_strategy(self, app: Celery, consumer: Any, **_: Any) -> Callable[..., None]:
        return BatchStrategy(self, app, consumer).on_message


class BatchStrategy:
    """The consumer's handler of ``orders.handle_command`` messages in batch mode (runs in
    the worker's main process, on its event loop; modelled on Celery's default
    strategy, celery/worker/strategy.py, and on celery-batches)."""

    def __init__(self, task: BatchCommandTask, app: Celery, consumer: Any) -> None:
        self.task, self.app, self.consumer = task, app, consumer
        self.pool = consumer.pool
        self.timer = consumer.timer
        self.revoked = consumer.controller.state.revoked
        self.Request = create_request_cls(
            symbol_by_name(task.Request),
            task,
            consumer.pool,
            consumer.hostname,
            consumer.event_dispatcher,
            app=app,
        )
        self.buffer: list[Any] = []
        self.flush_timer: Any = None
        self.in_flight = 0
        self.slots = max(1, int(getattr(self.pool, "limit", None) or 1))
        settings = task.services.settings
        self.time_limit = settings.command_time_limit
        self.soft_time_limit = max(1, settings.command_time_limit - 10)

    def on_message(
        self, message: Any, body: Any, ack: Any, reject: Any, callbacks: Any, **_: Any
    ) -> None:
        app = self.app
        if body is None and "args" not in message.payload:
            body, headers, decoded, utc = (
                message.body,
                message.headers,
                False,
                app.uses_utc_timezone(),
            )
        elif "args" in message.payload:
            body, headers, decoded, utc = hybrid_to_proto2(message, message.payload)
        else:
            body, headers, decoded, utc = proto1_to_proto2(message, body)
        request = self.Request(
            message,
            on_ack=ack,
            on_reject=reject,
            app=app,
            hostname=self.consumer.hostname,
            eventer=self.consumer.event_dispatcher,
            task=self.task,
            connection_errors=self.consumer.connection_errors,
            body=body,
            headers=headers,
            decoded=decoded,
            utc=utc,
        )
        log.info(trace.LOG_RECEIVED, {"name": request.name, "id": request.id})
        if (request.expires or request.id in self.revoked) and request.revoked():
            return
        signals.task_received.send(sender=self.consumer, request=request)
        task_reserved(request)
        if request.eta:
            # A retry sent with a countdown: into a batch when it is due.
            eta = to_timestamp(request.eta)  # type: ignore[no-untyped-call]
            self.consumer.qos.increment_eventually()
            self.timer.call_at(eta, self._due, (request,), priority=6)
            return
        self._add(request)

    def _due(self, request: Any) -> None:
        self.consumer.qos.decrement_eventually()
        self._add(request)

    def _add(self, request: Any) -> None:
        self.buffer.append(request)
        if len(self.buffer) >= self.task.batch_size:
            self.flush()
        elif self.flush_timer is None and self.in_flight < self.slots:
            self.flush_timer = self.timer.call_after(self.task.flush_after, self._when_free)

    def _when_free(self) -> None:
        self.flush_timer = None
        if self.in_flight < self.slots:
            self.flush()
        # else: every pool process is busy; the next one done takes the buffer.

    def _finished(self) -> None:
        self.in_flight -= 1
        if self.buffer and self.flush_timer is None:
            self.flush_timer = self.timer.call_after(self.task.flush_after, self._when_free)

    def flush(self) -> None:
        if self.flush_timer is not None:
            self.flush_timer.cancel()
            self.flush_timer = None
        requests, self.buffer = self.buffer, []
        if not requests:
            return
        self.in_flight += 1
        items = [_item(request) for request in requests]

        def done(_result: Any) -> None:
            # Committed, answered, and any retries sent: only now are they acknowledged.
            for request in requests:
                request.acknowledge()
                task_ready(request, successful=True)
            self._finished()

        def lost(error: Any) -> None:
            # The pool process died or hit the hard time limit, or the job raised: maybe
            # committed, maybe not. Requeued, the command log answers what was.
            log.error("a batch of %d commands was lost (%r); requeued", len(requests), error)
            for request in requests:
                request.reject(requeue=True)
                task_ready(request)
            self._finished()

        self.pool.apply_async(
            run_batch,
            args=(items,),
            callback=done,
            error_callback=lost,
            timeout=self.time_limit,
            soft_timeout=self.soft_time_limit,
        )


def _item(request: Any) -> Item:
    args, kwargs, _embed = request._payload
    headers = request.request_dict or {}
    return Item(
        task_id=request.id,
        args=tuple(args or ()),
        kwargs=dict(kwargs or {}),
        retries=int(headers.get("retries") or 0),
        sent_at=headers.get(SENT_AT_HEADER),
    )


# -- the pool process: decide, commit, answer -----------------------------------------------


def run_batch(items: list[Item]) -> int:
    """The pool's job: every item answered (or sent again for later); the number of them."""
    assert _APP is not None, "workers.batch.install was not called in this worker"
    task = _APP.tasks[HANDLE_COMMAND]
    services = task.services
    started = time.perf_counter()
    handle_batch(services, items)
    answered = [item for item in items if item.outcome is not None]
    retried = [item for item in items if item.outcome is None]
    _store_outcomes(task.backend, answered)
    for item in answered:
        _observe_end_to_end(services, item.sent_at)
    if any(item.outcome is not None and item.outcome.accepted for item in answered):
        _wake_projections(_APP, services)  # once per batch, after the commit
    if retried:
        _send_again(services, retried)
    log.info(
        "batch of %d: %d answered, %d to retry, in %.1f ms",
        len(items),
        len(answered),
        len(retried),
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
            _alone(item, _decide, services, item.args[0], item.task_id, True)
        else:
            try:
                item.command = decode(item.args[0])
                batch.append(item)
            except InvalidEnvelope:
                # Rejected and recorded by the default path, alone (poison is rare).
                _alone(item, _decide, services, item.args[0], item.task_id, False)
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
        # The transaction was rolled back; the default path records each as failed.
        for item in batch:
            assert item.command is not None
            reason = f"the batch ran past its time limit: {late}"
            _alone(item, services.handler.fail, item.command, type(late).__name__, reason)
        return
    except Exception as error:
        if is_unreachable(error):
            log.warning("database unreachable; the batch of %d is retried", len(batch))
            return  # no outcomes: every item is sent again
        # A bug in the batch path: nothing of it was committed. Each command alone.
        log.exception("a batch of %d commands failed; deciding each alone", len(batch))
        for item in batch:
            _alone(item, _decide, services, item.args[0], item.task_id, False)
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
            log.info("command %s %s", command.command_id, _described(outcome))


def _alone(item: Item, decide: Callable[..., Outcome | None], *args: Any) -> None:
    """One item on its own (its own transactions); left unanswered, to be retried, when
    the database is unreachable."""
    with log_context(task_id=item.task_id, retries=item.retries or None):
        try:
            outcome = decide(*args)
        except Exception as error:
            if not is_unreachable(error):
                raise
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
    (Celery never replaces a SUCCESS), then the new results, each published too."""
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
                if backend.expires:
                    pipe.setex(key, backend.expires, value)
                else:
                    pipe.set(key, value)
                pipe.publish(key, value)
            pipe.execute()
    except Exception:
        # Committed and in the command log: a producer that resends is answered from it.
        log.warning("could not store the outcomes of a batch of %d", len(items), exc_info=True)
    for task_id, result, _ in writes:
        log.info("Task %s[%s] succeeded: %s", HANDLE_COMMAND, task_id, json.dumps(result))


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


# -- the option -------------------------------------------------------------------------


class BatchMode(bootsteps.Step):  # type: ignore[misc]
    """``--batch N``: swaps in the batch task and lets each pool process have
    ``PREFETCH_BATCHES`` batches in hand."""

    name = "orders batch mode"

    def __init__(self, worker: Any, batch: int | None = None, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        if batch:
            enable(worker.app, batch)
            worker.prefetch_multiplier = max(worker.prefetch_multiplier, PREFETCH_BATCHES * batch)
            log.info("batch mode: up to %d commands per transaction", batch)


def enable(app: Celery, batch: int) -> BatchCommandTask:
    """Register the batch task in place of the default ``orders.handle_command``."""
    global _APP
    _APP = app
    task = BatchCommandTask()
    task.batch_size = batch
    app.tasks.pop(HANDLE_COMMAND, None)
    app.register_task(task)
    return task


def install(app: Celery) -> None:
    """Add ``--batch N`` to ``celery worker`` for ``app``."""
    app.user_options["worker"].add(
        click.Option(
            ["--batch"],
            type=click.IntRange(0, MAX_BATCH),
            default=0,
            help=f"Decide commands up to N at a time, one transaction each (1-{MAX_BATCH}).",
        )
    )
    app.steps["worker"].add(BatchMode)
