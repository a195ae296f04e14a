"""A Celery consumer that records unreadable messages instead of only logging them.

Celery acknowledges a message it cannot decode, or one that is not a task at all, and
writes a log line. Here the raw body also goes to the dead-letter table, so an operator
can see what a producer sent, and a message that names a task id gets a ``rejected``
outcome, so its producer is not left waiting. A task message whose body Celery cannot
even unpack would otherwise stop the worker, and every worker after it: it is
dead-lettered and dropped like the rest.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from celery.worker.consumer import Consumer

from commands import Outcome
from workers import runtime

log = logging.getLogger(__name__)


class RecordingConsumer(Consumer):  # type: ignore[misc]
    def on_decode_error(self, message: Any, exc: Exception) -> None:
        super().on_decode_error(message, exc)
        self._record(message, f"undecodable message ({message.content_type}): {exc}")

    def on_unknown_message(self, body: Any, message: Any) -> None:
        super().on_unknown_message(body, message)
        self._record(message, "not a task message: no task name in its headers")

    def on_unknown_task(self, body: Any, message: Any, exc: Exception) -> None:
        super().on_unknown_task(body, message, exc)
        self._record(message, f"unknown task: {exc}")

    def on_invalid_task(self, body: Any, message: Any, exc: Exception) -> None:
        super().on_invalid_task(body, message, exc)
        self._record(message, f"invalid task message: {exc}")

    def create_task_handler(self, *args: Any, **kwargs: Any) -> Callable[[Any], Any]:
        handle: Callable[[Any], Any] = super().create_task_handler(*args, **kwargs)

        def on_task_received(message: Any) -> Any:
            try:
                return handle(message)
            except Exception as malformed:
                # Raised while Celery unpacks the message, before any task code runs.
                self._record(message, f"malformed task message: {malformed!r}")
                message.reject_log_error(log, self.connection_errors)
                return None

        return on_task_received

    def _record(self, message: Any, reason: str) -> None:
        queue = str((message.delivery_info or {}).get("routing_key") or "unknown")
        try:
            runtime.services().dead_letters.record(queue, reason, _text(message.body))
        except Exception:
            # The message is dropped either way; this log line keeps its trace.
            log.exception("could not record a dead letter from %s: %s", queue, reason)
        task_id = (message.headers or {}).get("id")
        if isinstance(task_id, str) and task_id:
            rejected = Outcome(
                status="rejected", command_id=task_id, error="InvalidCommand", message=reason[:500]
            )
            try:
                self.app.backend.store_result(task_id, rejected.to_dict(), "SUCCESS")
            except Exception:
                log.exception("could not tell the producer of %s that it was rejected", task_id)


def _text(raw: Any) -> str:
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
