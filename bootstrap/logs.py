"""Log lines an operator can follow: JSON on request, the command's ids on every line.

``ORDERS_LOG_FORMAT=json`` writes one JSON object per line: time, level, logger,
message, and, where known, the command's ids and outcome (``FIELDS``). The ids come
from ``log_context``, which the worker opens around each command, and from Celery's own
records of a task (received, succeeded, retried), which name the task id: a command
message's task id is its command id unless a foreign producer chose another (then the
worker's own lines carry both). Text or JSON, the routine lines of the read models'
wake-ups and sweeps (Celery's "received"/"succeeded", beat's "sending due task") are
DEBUG: at INFO they would drown the commands.
"""

from __future__ import annotations

import json
import logging
import traceback
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from commands.transport import HANDLE_COMMAND, SWEEP_PROJECTIONS, WAKE_PROJECTIONS

FIELDS = (
    "command_id",
    "task_id",
    "correlation_id",
    "order_id",
    "command_type",
    "status",
    "duration_ms",
    "retries",
    "projection",
)
ROUTINE_TASKS = frozenset({SWEEP_PROJECTIONS, WAKE_PROJECTIONS})
REMEMBERED_TASKS = 1_024

_NOTHING: Mapping[str, Any] = MappingProxyType({})
_context: ContextVar[Mapping[str, Any]] = ContextVar("orders_log_context", default=_NOTHING)
# A foreign producer's task id -> its command id, for Celery's own "succeeded" line,
# written after the task has returned (and its context is gone).
_command_of_task: OrderedDict[str, str] = OrderedDict()


@contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Every log line written inside carries ``fields`` (None values are left out)."""
    token = _context.set({**_context.get(), **_known(fields)})
    try:
        yield
    finally:
        _context.reset(token)


def bind(**fields: Any) -> None:
    """Add ``fields`` to the innermost ``log_context`` (as learnt, say, after decoding)."""
    context = {**_context.get(), **_known(fields)}
    _context.set(context)
    task_id, command_id = context.get("task_id"), context.get("command_id")
    if task_id and command_id and task_id != command_id:
        _command_of_task[task_id] = command_id
        while len(_command_of_task) > REMEMBERED_TASKS:
            _command_of_task.popitem(last=False)


def _known(fields: Mapping[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in fields.items() if value is not None}


class ContextFilter(logging.Filter):
    """Puts the context's fields on each record and makes routine task lines DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        task = _celery_task(record)
        if task is not None:
            name, task_id = task
            if name in ROUTINE_TASKS and record.levelno == logging.INFO:
                record.levelno, record.levelname = logging.DEBUG, "DEBUG"
                if not logging.getLogger().isEnabledFor(logging.DEBUG):
                    return False
            if name == HANDLE_COMMAND and task_id:
                record.task_id = task_id
                record.command_id = _command_of_task.get(task_id, task_id)
        for name, value in _context.get().items():
            if not hasattr(record, name):
                setattr(record, name, value)
        return True


def _celery_task(record: logging.LogRecord) -> tuple[str, str | None] | None:
    """(task name, task id) of Celery's records about one task, and beat's sends."""
    args = record.args
    if isinstance(args, Mapping):
        name, task_id = args.get("name"), args.get("id")
        if isinstance(name, str):
            return name, task_id if isinstance(task_id, str) else None
    if record.name.startswith("celery.beat") and isinstance(args, tuple) and len(args) == 2:
        return str(args[1]), None  # "Scheduler: Sending due task %s (%s)"
    return None


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if record.exc_info and record.exc_info[0] is not None:
            line["exception"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        return json.dumps(line, default=str)


def install(handlers: list[logging.Handler], log_format: str) -> None:
    """Give ``handlers`` the context filter, and the JSON format when asked for."""
    for handler in handlers:
        if not any(isinstance(found, ContextFilter) for found in handler.filters):
            handler.addFilter(ContextFilter())
        if log_format == "json":
            handler.setFormatter(JsonFormatter())


def configure(log_format: str, level: int | str = logging.INFO) -> None:
    """Logging for a process Celery does not set up (the API, the CLI)."""
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)
    root.setLevel(level)
    install(root.handlers, log_format)
