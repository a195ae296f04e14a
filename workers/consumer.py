"""A Celery consumer that dead-letters what it cannot run, instead of only logging it.

Celery acknowledges a message it cannot decode, one that is not a task at all, or one
for a task it does not know, and writes a log line. Here each of them, and each item
the transport could not read as a message at all (``workers.broker``), goes to the
dead-letter table with its raw body and the reason, and a message that names a task id
gets a ``rejected`` outcome, so its producer is not left waiting. A task message Celery
cannot even unpack would otherwise stop the worker: it is dead-lettered like the rest.

Nothing is acknowledged before it is recorded. While the database is unreachable the
message stays unacknowledged (it is redelivered if this worker dies) and recording is
tried again later, off the consumer's timer, so the worker goes on consuming.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from celery.worker.consumer import Consumer

from commands import Outcome
from store.errors import is_unreachable
from workers.broker import UNREADABLE_HEADER
from workers.runtime import process_services

log = logging.getLogger(__name__)

FIRST_RETRY_DELAY = 1.0
MAX_RETRY_DELAY = 30.0
MAX_TASK_ID = 255


class RecordingConsumer(Consumer):  # type: ignore[misc]
    def on_decode_error(self, message: Any, exc: Exception) -> None:
        self._dead_letter(message, f"undecodable message ({message.content_type}): {exc}")

    def on_unknown_message(self, body: Any, message: Any) -> None:
        self._dead_letter(message, "not a task message: no task name in its headers")

    def on_unknown_task(self, body: Any, message: Any, exc: Exception) -> None:
        self._dead_letter(message, f"unknown task: {exc}")

    def on_invalid_task(self, body: Any, message: Any, exc: Exception) -> None:
        self._dead_letter(message, f"invalid task message: {exc}")

    def create_task_handler(self, *args: Any, **kwargs: Any) -> Callable[[Any], Any]:
        handle: Callable[[Any], Any] = super().create_task_handler(*args, **kwargs)

        def on_task_received(message: Any) -> Any:
            unreadable = _header(message, UNREADABLE_HEADER)
            if unreadable is not None:
                return self._dead_letter(message, str(unreadable))
            task_id = _header(message, "id")
            if _header(message, "task") is not None and not _is_task_id(task_id):
                # Celery would run it and then fail to store its result under that id.
                reason = f"the task id must be a non-empty string, got {_shown(task_id)}"
                return self._dead_letter(message, f"invalid task message: {reason}")
            try:
                return handle(message)
            except Exception as malformed:
                # Raised while Celery unpacks the message, before any task code runs.
                return self._dead_letter(message, f"malformed task message: {malformed!r}")

        return on_task_received

    def _dead_letter(self, message: Any, reason: str, attempt: int = 0) -> None:
        """Record ``message`` with ``reason``, tell its producer, then acknowledge it."""
        queue = str((message.delivery_info or {}).get("routing_key") or "unknown")
        try:
            services = process_services(self.app).services
            services.dead_letters.record(queue, reason, _text(message.body))
        except Exception as error:
            if is_unreachable(error):
                delay = min(MAX_RETRY_DELAY, FIRST_RETRY_DELAY * 2**attempt)
                log.warning(
                    "could not dead-letter a message from %s yet (database unreachable); "
                    "trying again in %.0f s: %s",
                    queue,
                    delay,
                    reason,
                )
                self.timer.call_after(delay, self._dead_letter, (message, reason, attempt + 1))
                return
            # A bug, not an outage: this log line keeps the message's trace.
            log.exception("could not dead-letter a message from %s: %s", queue, reason)
        else:
            log.warning("dead-lettered a message from %s: %s", queue, reason)
        self._tell_producer(message, reason)
        message.ack_log_error(log, self.connection_errors)

    def _tell_producer(self, message: Any, reason: str) -> None:
        task_id = _header(message, "id")
        if not _is_task_id(task_id):
            return
        rejected = Outcome(
            status="rejected", command_id=task_id, error="InvalidCommand", message=reason[:500]
        )
        try:
            self.app.backend.store_result(task_id, rejected.to_dict(), "SUCCESS")
        except Exception:
            log.exception("could not tell the producer of %s that it was rejected", task_id)


def _is_task_id(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_TASK_ID


def _shown(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:40]}"


def _header(message: Any, name: str) -> Any:
    headers = message.headers
    return headers.get(name) if isinstance(headers, dict) else None


def _text(raw: Any) -> str:
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
