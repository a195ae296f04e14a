"""What every read answer carries, and why most are not computed again.

Every answer says how fresh the read models behind it are (``X-Orders-Checkpoint``,
``X-Orders-Lag-Events``, ``X-Orders-Lag-Seconds``); lists and summaries carry an
``ETag``, so a dashboard polling with ``If-None-Match`` gets ``304`` while nothing
changed.

A read model changes only when its projection moves its checkpoint (or a rebuild swaps
it in, which stamps the checkpoint's time). So an answer is kept, keyed by the request
and the state of the read models it reads, and served again until one of them moves:
under a dashboard's polling, and under load, most requests cost no query at all. The
state itself is read at most every ``STATE_TTL`` seconds per process: an answer may be
that much older than the newest commit, which its headers say. A reader that needs its
own write waits for it explicitly (``?after_command=``), past this cache.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fastapi import Request, Response
from sqlalchemy import Connection, select
from starlette.concurrency import run_in_threadpool

from bootstrap import Services
from readmodels.freshness import wait_until_applied
from readmodels.projections import PROJECTIONS
from readmodels.queries import to_json
from readmodels.tables import projection_checkpoints
from store.log import Checkpoint

STALE_HEADER = "X-Orders-Consistency"
STATE_TTL = 0.1
CAPACITY = 2048


@dataclass(frozen=True)
class ModelState:
    checkpoint: Checkpoint
    stamped: datetime | None  # when the checkpoint was last saved: a rebuild stamps it
    lag_events: int
    lag_seconds: float


class Answers:
    """Kept answers of one server process. Its methods are coroutines: a kept answer is
    served on the event loop, with no thread hop; only queries go to the thread pool."""

    def __init__(self, services: Services) -> None:
        self._services = services
        self._lock = threading.Lock()  # the kept answers: pool threads write them too
        self._refreshing = asyncio.Lock()
        self._states: dict[str, ModelState] = {}
        self._read_at = -STATE_TTL
        self._kept: OrderedDict[tuple[Any, ...], tuple[bytes, str]] = OrderedDict()
        # A read needs no transaction: no BEGIN and ROLLBACK around every answer (a
        # quarter of an uncached one's time).
        self._reads = services.read_engine.execution_options(isolation_level="AUTOCOMMIT")

    async def respond(
        self,
        request: Request,
        read_models: Sequence[str],
        produce: Callable[[Connection], Any],
        *,
        etag: bool = False,
        headers: dict[str, str] | None = None,
        fresh: bool = False,
        keep: bool = True,
    ) -> Response:
        """The answer ``produce`` makes from the read models, or the one kept for the
        same request and the same state of ``read_models``. ``fresh``: read their state
        now (after a wait for a command), not up to ``STATE_TTL`` ago. ``keep=False``:
        an answer about more than the read models' rows (their lag, say)."""
        states = await self.states(refresh=fresh)
        mine = [states.get(name, ModelState(Checkpoint(), None, 0, 0.0)) for name in read_models]

        def make() -> bytes:
            with self._reads.connect() as conn:
                return json.dumps(to_json(produce(conn)), separators=(",", ":")).encode()

        body, tag = await self.kept(request, mine, make, keep=keep)
        slowest = min(mine, key=lambda state: state.checkpoint)
        extra = {
            "X-Orders-Checkpoint": f"{slowest.checkpoint.transaction_id}/"
            f"{slowest.checkpoint.position}",
            "X-Orders-Lag-Events": str(max(state.lag_events for state in mine)),
            "X-Orders-Lag-Seconds": f"{max(state.lag_seconds for state in mine):.3f}",
            **(headers or {}),
        }
        if etag:
            extra["ETag"] = tag
            extra["Cache-Control"] = "no-cache"
            if tag in request.headers.get("if-none-match", ""):
                return Response(status_code=304, headers=extra)
        return Response(body, media_type="application/json", headers=extra)

    async def kept(
        self,
        request: Request,
        mine: Sequence[ModelState],
        make: Callable[[], bytes],
        *,
        keep: bool = True,
        shows_lag: bool = False,
    ) -> tuple[bytes, str]:
        """The body ``make`` makes, and its ETag; kept for this request while the read
        models it reads (``mine``) stay where they are (and, when the body ``shows_lag``,
        while the log does too)."""
        key = (
            request.url.path,
            request.url.query,
            *((s.checkpoint, s.stamped, s.lag_events if shows_lag else None) for s in mine),
        )
        found = None
        if keep:
            with self._lock:
                found = self._kept.get(key)
                if found is not None:
                    self._kept.move_to_end(key)
        if found is None:
            body = await run_in_threadpool(make)
            found = (body, f'W/"{hashlib.sha256(body).hexdigest()[:32]}"')
            if keep:
                with self._lock:
                    self._kept[key] = found
                    while len(self._kept) > CAPACITY:
                        self._kept.popitem(last=False)
        return found

    async def states(self, *, refresh: bool = False) -> dict[str, ModelState]:
        """Every read model's state, read at most every ``STATE_TTL`` seconds, by one
        request at a time; the others meanwhile use the state read before."""
        if not refresh and time.monotonic() - self._read_at < STATE_TTL:
            return self._states
        if self._refreshing.locked() and not refresh and self._states:
            return self._states
        async with self._refreshing:
            if refresh or time.monotonic() - self._read_at >= STATE_TTL:
                self._states = await run_in_threadpool(self._read_states)
                self._read_at = time.monotonic()
        return self._states

    async def wait_for(self, command_id: str | None, read_models: Sequence[str]) -> dict[str, str]:
        """Wait (bounded by ``ORDERS_API_CONSISTENCY_WAIT``) until ``read_models`` show
        ``command_id``'s events; the header that says whether they do."""
        if command_id is None:
            return {}
        services = self._services
        applied = await run_in_threadpool(
            wait_until_applied,
            services.read_engine.connect,
            services.reader,
            read_models,
            services.store.find_outcome,
            command_id,
            services.settings.api_consistency_wait,
        )
        return {STALE_HEADER: "fresh" if applied else "stale"}

    def _read_states(self) -> dict[str, ModelState]:
        with self._reads.connect() as conn:
            return _read_states(conn, self._services)


def _read_states(conn: Connection, services: Services) -> dict[str, ModelState]:
    rows = conn.execute(
        select(
            projection_checkpoints.c.name,
            projection_checkpoints.c.transaction_id,
            projection_checkpoints.c.position,
            projection_checkpoints.c.updated_at,
        )
    ).all()
    saved = {
        row.name: (Checkpoint(row.transaction_id, row.position), row.updated_at) for row in rows
    }
    now = datetime.now(UTC)
    backlogs: dict[Checkpoint, tuple[int, float]] = {}  # caught-up models share one
    states = {}
    for name in PROJECTIONS:
        # A projection that never ran has the whole log ahead of it.
        checkpoint, stamped = saved.get(name, (Checkpoint(), None))
        if checkpoint not in backlogs:
            backlog = services.reader.backlog(conn, checkpoint)
            lag = (now - backlog.oldest).total_seconds() if backlog.oldest else 0.0
            backlogs[checkpoint] = (backlog.events, max(lag, 0.0))
        events, seconds = backlogs[checkpoint]
        states[name] = ModelState(checkpoint, stamped, events, seconds)
    return states
