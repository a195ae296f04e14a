"""Coalescing wake-ups: a burst of accepted commands schedules one projection run.

A command worker sets a short-lived Redis key with ``SET NX PX`` after its commit; only
the one that set it sends a wake-up. The wake-up deletes the key *before* it reads the
log, so a command committing after that sets the key again and schedules the next run:
no commit can slip between a run's read and the key's deletion unnoticed. The key's
expiry only matters if a wake-up is lost, and then the periodic sweep catches up.
"""

from __future__ import annotations

import logging
from typing import Protocol

log = logging.getLogger(__name__)

WAKE_KEY = "orders:projections:wake-pending"


class RedisLike(Protocol):
    def set(self, name: str, value: str, *, nx: bool, px: int) -> object: ...
    def delete(self, *names: str) -> object: ...


class WakeDebouncer:
    def __init__(self, redis: RedisLike | None, expiry_ms: int = 5_000) -> None:
        """``redis`` None (the embedded mode) sends every wake-up."""
        self._redis = redis
        self._expiry_ms = expiry_ms

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
