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


class RedisWithGet(RedisLike, Protocol):
    def getdel(self, name: str) -> object: ...


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


RERUN_KEY = "orders:projections:rerun:{}"


class RerunRequests:
    """Hand-over between runs of one projection, instead of retrying when it is busy.

    A run asks first (``request``) and then tries the projection's lock. The run that
    holds the lock cleared the request when it took the lock, and looks again after it
    let go (``take``): a request made meanwhile means a commit it may not have read, so it
    runs once more. A request made after that look finds the lock free and runs itself.
    """

    def __init__(self, redis: RedisWithGet | None, expiry_ms: int = 60_000) -> None:
        self._redis = redis
        self._expiry_ms = expiry_ms

    def request(self, name: str) -> None:
        self._call("set", RERUN_KEY.format(name), "1", px=self._expiry_ms)

    def clear(self, name: str) -> None:
        self._call("delete", RERUN_KEY.format(name))

    def take(self, name: str) -> bool:
        return bool(self._call("getdel", RERUN_KEY.format(name)))

    def _call(self, method: str, *args: object, **kwargs: object) -> object:
        if self._redis is None:
            return None
        try:
            return getattr(self._redis, method)(*args, **kwargs)
        except Exception:
            # Without the hand-over a run may end early; the sweep still catches up.
            log.warning("projection re-run request failed (%s)", method, exc_info=True)
            return None
