"""A Celery consumer that records unreadable messages instead of only logging them.

Celery acknowledges a message it cannot decode, or one that is not a task at all, and
writes a log line. Here the raw body also goes to the dead-letter table, so an operator
can see what a producer sent.
"""

from __future__ import annotations

import logging
from typing import Any

from celery.worker.consumer import Consumer

from workers import runtime

log = logging.getLogger(__name__)


class RecordingConsumer(Consumer):  # type: ignore[misc]
    def on_decode_error(self, message: Any, exc: Exception) -> None:
        _record(message, f"undecodable message ({message.content_type}): {exc}")
        super().on_decode_error(message, exc)

    def on_unknown_message(self, body: Any, message: Any) -> None:
        _record(message, "not a task message: no task name in its headers")
        super().on_unknown_message(body, message)

    def on_unknown_task(self, body: Any, message: Any, exc: Exception) -> None:
        _record(message, f"unknown task: {exc}")
        super().on_unknown_task(body, message, exc)

    def on_invalid_task(self, body: Any, message: Any, exc: Exception) -> None:
        _record(message, f"invalid task message: {exc}")
        super().on_invalid_task(body, message, exc)


def _record(message: Any, reason: str) -> None:
    raw = message.body
    body = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    queue = (message.delivery_info or {}).get("routing_key") or "unknown"
    try:
        runtime.services().dead_letters.record(str(queue), reason, body)
    except Exception:
        # The message is dropped either way; the log line below keeps its trace.
        log.exception("could not record a dead letter from %s: %s", queue, reason)
