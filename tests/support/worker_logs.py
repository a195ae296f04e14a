"""What a worker's log says about the tasks it took."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime

_TASK_LINE = re.compile(
    r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}): .*"
    r"Task orders\.handle_command\[([0-9a-f-]{36})\] (received|succeeded)"
)


def task_log(lines: Iterable[str]) -> dict[str, set[str]]:
    """``received`` and ``succeeded`` task ids in a worker's log."""
    seen: dict[str, set[str]] = {"received": set(), "succeeded": set()}
    for line in list(lines):
        match = _TASK_LINE.search(line)
        if match:
            seen[match.group(3)].add(match.group(2))
    return seen


def received_at(lines: Iterable[str]) -> dict[str, float]:
    """task id -> when the worker logged it as received (epoch seconds, local clock)."""
    times: dict[str, float] = {}
    for line in list(lines):
        match = _TASK_LINE.search(line)
        if match and match.group(3) == "received":
            logged = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f")
            times.setdefault(match.group(2), logged.timestamp())
    return times
