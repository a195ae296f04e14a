"""Waiting for what the system does in its own time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def eventually(probe: Callable[[], T], done: Callable[[T], bool], timeout: float = 30.0) -> T:
    """Call ``probe`` until ``done`` accepts its result or ``timeout`` seconds pass.

    The PostgreSQL global reader holds back while ANY older transaction in the cluster is
    open (other test sessions share the server), so a positive expectation may need to
    wait a moment; it returns the last result either way and the caller asserts on it.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if done(result) or time.monotonic() >= deadline:
            return result
        time.sleep(0.05)
