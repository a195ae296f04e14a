"""Coalescing wake-ups: a burst of accepted commands schedules one projection run.

A command worker sets a short-lived Redis key with ``SET NX PX`` after its commit; only
the one that set it sends a wake-up. The wake-up deletes the key *before* it reads the
log, so a command committing after that sets the key again and schedules the next run:
no commit can slip between a run's read and the key's deletion unnoticed. The key's
expiry only matters if a wake-up is lost, and then the periodic sweep catches up.

The wake-up is sent to run ``window`` seconds later (a countdown, held by the worker's
consumer, not a pool process): the commits of that window find the key set and join
its run. A run costs a handful of round trips whatever it reads, so events read
together cost a fraction of events read one wake-up each; the window is sized from the
freshness budget, of which it takes a part (``WAKE_WINDOW``).
"""

from __future__ import annotations

import logging
from typing import Protocol

log = logging.getLogger(__name__)

WAKE_KEY = "orders:projections:wake-pending"

FRESHNESS_BUDGET = 0.25
"""Seconds from a command's outcome to its events in every read model (p99, half load)."""
WAKE_WINDOW = 0.4 * FRESHNESS_BUDGET
"""Seconds a wake-up gathers commits before it runs. The rest of the budget: the
queue's wait, the run, and for events held back behind a transaction still open, a look
again half a window later (``workers.tasks``). At 200 commands/s, a run of some 20
events, where one wake-up per command read one or two."""


class RedisLike(Protocol):
    def set(self, name: str, value: str, *, nx: bool, px: int) -> object: ...
    def delete(self, *names: str) -> object: ...


class RedisWithGet(RedisLike, Protocol):
    def getdel(self, name: str) -> object: ...


class WakeDebouncer:
    def __init__(
        self, redis: RedisLike | None, expiry_ms: int = 5_000, window: float = WAKE_WINDOW
    ) -> None:
        """``redis`` None (the embedded mode) sends every wake-up, at once: without the
        key nothing joins a wake-up, and waiting would buy nothing."""
        self._redis = redis
        self._expiry_ms = expiry_ms
        self.window = window if redis is not None else 0.0
        """Seconds between a wake-up's claim and its run (its countdown)."""

    def claim(self) -> bool:
        """True when this caller should send the wake-up; False when one is pending."""
        if self._redis is None:
            return True
        try:
            return bool(self._redis.set(WAKE_KEY, "1", nx=True, px=self._expiry_ms))
        except Exception:
            # Unsure whether one is pending: a spare wake-up costs a read, a missing one
            # costs freshness.
            log.warning("wake-up debounce unavailable; sending anyway", exc_info=True)
            return True

    def release(self) -> None:
        """Called by the wake-up as it starts: later commits must schedule a new one."""
        if self._redis is None:
            return
        try:
            self._redis.delete(WAKE_KEY)
        except Exception:
            log.warning("could not clear the wake-up key; it expires on its own", exc_info=True)
