"""Where each projection stands, and the events it parked."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection, delete, func, select

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
    return int.from_bytes(
        hashlib.sha256(f"projection:{name}".encode()).digest()[:8], "big", signed=True
    )


def try_lock(conn: Connection, name: str) -> bool:
    """Take the projection's lock for this transaction, or say it is taken."""
    return backend(conn).try_lock(conn, lock_key(name))


def hold_lock(conn: Connection, name: str) -> None:
    """Wait for the projection's lock and keep it for this session (a rebuild's)."""
    backend(conn).hold_lock(conn, lock_key(name))


def release_lock(conn: Connection, name: str) -> None:
    backend(conn).release_lock(conn, lock_key(name))
