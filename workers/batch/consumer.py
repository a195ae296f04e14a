"""Batch mode, in the worker's main process: buffer command messages, hand them to a
pool process as one job, acknowledge them when it returns (see ``workers.batch``)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import click
from celery import Celery, bootsteps, signals
from celery.app import trace
from celery.utils.imports import symbol_by_name
from celery.worker.request import create_request_cls
from celery.worker.state import task_ready, task_reserved
from celery.worker.strategy import hybrid_to_proto2, proto1_to_proto2
from kombu.asynchronous.timer import to_timestamp

from commands.transport import HANDLE_COMMAND, SENT_AT_HEADER
from workers.batch.limits import ALONE_HEADER, batch_limits
from workers.batch.pool import Item, run_batch, serve
from workers.tasks import OrdersTask, handle_command

log = logging.getLogger(__name__)

MAX_BATCH = 50
"""Each command of a batch that writes is a subtransaction until the commit; past 64 in
one transaction PostgreSQL's snapshots slow down for every session (store/postgres/batch.py)."""
FLUSH_AFTER = 0.001
"""Seconds a part-filled batch waits for more messages once a pool process is free."""
PREFETCH_BATCHES = 2
"""Batches each pool process may have in hand: one being decided, the next one filling."""


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
        # One limit per batch, whatever its size (workers/batch/limits.py).
        self.limits = batch_limits(task.services.settings)

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
        if _alone(request):
            # Its batch ran out of time: decided in a batch of its own.
            self._dispatch([request])
            return
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
        if requests:
            self._dispatch(requests)

    def _dispatch(self, requests: list[Any]) -> None:
        """``requests`` to a pool process as one job; acknowledged when it returns."""
        self.in_flight += 1
        items = [_item(request) for request in requests]

        def done(_result: Any) -> None:
            # Committed, answered, and any retries sent: only now are they acknowledged.
            # (Whatever happens, the slot is free again: a leaked one would leave lone
            # commands waiting for company that never comes.)
            # (The transport sends their acknowledgements to Redis together:
            # workers/broker.py, QoS.ack.)
            try:
                for request in requests:
                    request.acknowledge()
                    task_ready(request, successful=True)
            finally:
                self._finished()

        def lost(error: Any) -> None:
            # The pool process died or hit the hard time limit, or the job raised: maybe
            # committed, maybe not. Requeued, the command log answers what was.
            log.error("a batch of %d commands was lost (%r); requeued", len(requests), error)
            try:
                for request in requests:
                    request.reject(requeue=True)
                    task_ready(request)
            finally:
                self._finished()

        self.pool.apply_async(
            run_batch,
            args=(items,),
            callback=done,
            error_callback=lost,
            timeout=self.limits.hard,
            soft_timeout=self.limits.soft,
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


def _alone(request: Any) -> bool:
    return bool((request.request_dict or {}).get(ALONE_HEADER))


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
    serve(app)
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
