"""Where each projection stands, and the events it parked."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Row, delete, func, select

from readmodels.tables import parked_events, projection_checkpoints
from store import backend
from store.codec import as_utc
from store.log import Checkpoint, RecordedEvent


@dataclass(frozen=True)
class ProjectionState:
    name: str
    checkpoint: Checkpoint
    stuck: bool = False
    error: str | None = None
    updated_at: datetime | None = None


def read_state(conn: Connection, name: str) -> ProjectionState:
    row = conn.execute(
        select(projection_checkpoints).where(projection_checkpoints.c.name == name)
    ).first()
    return _state(name, row)


_EVERY_STATE = select(projection_checkpoints)


def read_states(conn: Connection, names: Iterable[str]) -> dict[str, ProjectionState]:
    """The states of ``names``, in one statement: the table holds a row per projection,
    so all of it is read rather than a list of names sent."""
    rows = {row.name: row for row in conn.execute(_EVERY_STATE)}
    return {name: _state(name, rows.get(name)) for name in names}


def _state(name: str, row: Row[Any] | None) -> ProjectionState:
    if row is None:
        return ProjectionState(name, Checkpoint())
    return ProjectionState(
        name,
        Checkpoint(row.transaction_id, row.position),
        row.stuck,
        row.error,
        as_utc(row.updated_at),
    )


def save_state(
    conn: Connection,
    name: str,
    checkpoint: Checkpoint,
    *,
    stuck: bool = False,
    error: str | None = None,
) -> None:
    row = {
        "name": name,
        "transaction_id": checkpoint.transaction_id,
        "position": checkpoint.position,
        "stuck": stuck,
        "error": error,
        "updated_at": datetime.now(UTC),
    }
    insert = backend(conn).upsert(projection_checkpoints).values(row)
    update = {key: insert.excluded[key] for key in row if key != "name"}
    conn.execute(insert.on_conflict_do_update(index_elements=["name"], set_=update))


def save_states(conn: Connection, states: Iterable[ProjectionState]) -> None:
    """``save_state`` for several projections, in one statement (their ``updated_at`` is
    now, whatever the states say)."""
    now = datetime.now(UTC)
    rows = [
        {
            "name": state.name,
            "transaction_id": state.checkpoint.transaction_id,
            "position": state.checkpoint.position,
            "stuck": state.stuck,
            "error": state.error,
            "updated_at": now,
        }
        for state in states
    ]
    backend(conn).write_rows(conn, projection_checkpoints, rows)


def park(conn: Connection, name: str, recorded: RecordedEvent, error: str) -> None:
    row = {
        "projection": name,
        "event_id": recorded.event_id,
        "transaction_id": recorded.checkpoint.transaction_id,
        "position": recorded.checkpoint.position,
        "event_type": recorded.event_type[:64],
        "error": error,
        "parked_at": datetime.now(UTC),
    }
    insert = backend(conn).upsert(parked_events).values(row)
    update = {"error": insert.excluded.error, "parked_at": insert.excluded.parked_at}
    conn.execute(
        insert.on_conflict_do_update(index_elements=["projection", "event_id"], set_=update)
    )


def unpark(conn: Connection, name: str) -> None:
    conn.execute(delete(parked_events).where(parked_events.c.projection == name))
    state = read_state(conn, name)
    save_state(conn, name, state.checkpoint)


def parked_count(conn: Connection, name: str) -> int:
    query = select(func.count()).where(parked_events.c.projection == name)
    return int(conn.execute(query).scalar_one())


def lock_key(name: str) -> int:
    """A stable 64-bit advisory-lock key per projection."""
    return _key(f"projection:{name}")


RUNS_KEY = "projections:runs"
"""The lock of the projection runs: one run at a time brings every projection up to date."""


def _key(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big", signed=True)


def try_runs_lock(conn: Connection) -> bool:
    """Take the runs' lock for this transaction, or say another run (or a rebuild) has it.

    A run of every projection takes one lock, not one per projection: each is a round
    trip, and a wake-up's run is a handful of round trips in all."""
    return backend(conn).try_lock(conn, _key(RUNS_KEY))


def hold_lock(conn: Connection, name: str) -> None:
    """Wait for the projection's lock and keep it for this session (a rebuild's).

    The runs' lock is held too: runs take that one lock for every projection, so while
    a rebuild of any projection goes on, every run finds it taken and reports busy (a
    rebuild is an operator's rare act; runs went on for the other projections before).
    It is taken first, so that rebuilds of overlapping sets queue instead of
    deadlocking; a session holds it once per projection, and ``release_lock`` lets go
    of each."""
    store = backend(conn)
    store.hold_lock(conn, _key(RUNS_KEY))
    store.hold_lock(conn, lock_key(name))


def release_lock(conn: Connection, name: str) -> None:
    store = backend(conn)
    store.release_lock(conn, lock_key(name))
    store.release_lock(conn, _key(RUNS_KEY))
