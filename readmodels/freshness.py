"""How fresh the read models are, and read-your-writes: waiting until they show a
command's events.

The event stores people compare this with leave read-your-writes to each application;
here a reader names the command it just sent, and the read side answers only once every
read model it reads has applied that command's events (or says it is answering stale).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection, select, text

from commands import Outcome
from readmodels.tables import projection_checkpoints
from store.log import Checkpoint, GlobalLog


@dataclass(frozen=True)
class Freshness:
    """Where the slowest of some read models stands: its checkpoint, and how far the
    log is ahead of it in events and in seconds (the oldest event it has not applied)."""

    checkpoint: Checkpoint
    lag_events: int
    lag_seconds: float


@dataclass(frozen=True)
class ReplicaLag:
    """How far a streaming replica that serves the reads is behind its primary: the
    age of the newest transaction it has replayed while it has more to replay (0 once
    it has replayed all it received), and the bytes of WAL it has received but not
    replayed. WAL the primary has not sent yet counts in neither."""

    seconds: float
    bytes: int


_REPLAY_LAG = text(
    """
    SELECT CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0
                ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp())
           END AS seconds,
           pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn()) AS bytes
    WHERE pg_is_in_recovery()
    """
)


def replica_lag(conn: Connection) -> ReplicaLag | None:
    """``conn``'s database's lag behind its primary; None when it is no replica (the
    primary itself, or SQLite)."""
    if conn.dialect.name != "postgresql":
        return None
    row = conn.execute(_REPLAY_LAG).first()
    if row is None:
        return None
    # NULL before the replica has replayed a transaction since it started: nothing to age.
    return ReplicaLag(max(float(row.seconds or 0), 0.0), int(row.bytes or 0))


def checkpoints(conn: Connection, names: Sequence[str]) -> dict[str, Checkpoint]:
    rows = conn.execute(
        select(
            projection_checkpoints.c.name,
            projection_checkpoints.c.transaction_id,
            projection_checkpoints.c.position,
        ).where(projection_checkpoints.c.name.in_(list(names)))
    )
    found = {row.name: Checkpoint(row.transaction_id, row.position) for row in rows}
    return {name: found.get(name, Checkpoint()) for name in names}


def freshness(conn: Connection, log: GlobalLog, names: Sequence[str]) -> Freshness:
    slowest = min(checkpoints(conn, names).values(), default=Checkpoint())
    backlog = log.backlog(conn, slowest)
    lag = (datetime.now(UTC) - backlog.oldest).total_seconds() if backlog.oldest else 0.0
    return Freshness(slowest, backlog.events, max(lag, 0.0))


def wait_until_applied(
    connect: Callable[[], Connection],
    log: GlobalLog,
    names: Sequence[str],
    find_outcome: Callable[[str], Outcome | None],
    command_id: str,
    timeout: float,
    poll: float = 0.02,
) -> bool:
    """Until every one of ``names`` has applied ``command_id``'s events; False when
    ``timeout`` seconds pass first. A command without an outcome yet is waited for too,
    and so is its last event on a replica that has not replayed it yet; a command that
    appended nothing (rejected, failed) has nothing to wait for."""
    deadline = time.monotonic() + timeout
    target: Checkpoint | None = None
    while True:
        with connect() as conn:
            if target is None:
                outcome = find_outcome(command_id)
                if outcome is not None and not outcome.accepted:
                    return True
                if outcome is not None and outcome.order_id and outcome.version:
                    target = log.checkpoint_of(conn, outcome.order_id, outcome.version)
            if target is not None and all(
                applied >= target for applied in checkpoints(conn, names).values()
            ):
                return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll)
