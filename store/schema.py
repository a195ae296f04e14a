"""The event store's tables, declared once. The migrations create them; a test holds
the migrated database against these declarations on PostgreSQL and SQLite.

What exists on one database only says so in its ``info`` (``ONLY``): the migrations
create it there alone, and the comparison skips it elsewhere.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    Uuid,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from store.postgres.types import Xid8

metadata = MetaData()
ONLY = "only_on"
"""``info`` key of a column or index that exists on one database only."""
POSTGRES_ONLY = {ONLY: "postgresql"}


def only_on(thing: Any) -> str | None:
    """The one database ``thing`` (a table, column or index) exists on, or None."""
    only: str | None = getattr(thing, "info", {}).get(ONLY)
    for column in getattr(thing, "columns", ()):  # an index on such a column
        only = only or column.info.get(ONLY)
    return only


VERSION_CONSTRAINT = "events_stream_version_key"

Json = JSON().with_variant(JSONB(), "postgresql")
Position = BigInteger().with_variant(Integer(), "sqlite")

events = Table(
    "events",
    metadata,
    Column("position", Position, primary_key=True, autoincrement=True),
    Column("event_id", Uuid(as_uuid=False), nullable=False),
    Column("aggregate_type", String(64), nullable=False),
    Column("aggregate_id", String(128), nullable=False),
    Column("version", Integer, nullable=False),
    Column("event_type", String(64), nullable=False),
    Column("schema_version", SmallInteger, nullable=False),
    Column("data", Json, nullable=False),
    Column("metadata", Json, nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    # The inserting transaction, for the gap-free global log (store/postgres/global_log.py);
    # the database fills it, nothing else writes it.
    Column(
        "transaction_id",
        Xid8(),
        nullable=False,
        server_default=text("pg_current_xact_id()"),
        info=POSTGRES_ONLY,
    ),
    UniqueConstraint("event_id", name="events_event_id_key"),
    # Optimistic concurrency: one event per version per stream, whoever commits first.
    UniqueConstraint("aggregate_type", "aggregate_id", "version", name=VERSION_CONSTRAINT),
    CheckConstraint("version > 0", name="events_version_positive"),
    Index("events_transaction_position", "transaction_id", "position", info=POSTGRES_ONLY),
    sqlite_autoincrement=True,
)

snapshots = Table(
    "snapshots",
    metadata,
    Column("aggregate_type", String(64), primary_key=True),
    Column("aggregate_id", String(128), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("schema_version", SmallInteger, nullable=False),
    Column("state", Json, nullable=False),
    Column("taken_at", DateTime(timezone=True), nullable=False),
)

command_log = Table(
    "command_log",
    metadata,
    Column("command_id", String(36), primary_key=True),
    Column("command_type", String(64), nullable=False),
    Column("aggregate_id", String(128)),
    Column("status", String(16), nullable=False),
    Column("outcome", Json, nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    # sha256 of what the command asked for: a redelivery matches it, another command
    # reusing the id does not (NULL for commands recorded before it existed).
    Column("fingerprint", String(64)),
    # An order's commands, for its timeline.
    Index("command_log_order", "aggregate_id", "recorded_at"),
    # Pruning by age (store/retention.py).
    Index("command_log_recorded_at", "recorded_at"),
)

command_task_ids = Table(
    "command_task_ids",
    metadata,
    # A producer whose library picks its own task id (celery-node, ``celery call``) sent
    # the command under this task id: its outcome is found by either id.
    Column("task_id", String(255), primary_key=True),
    Column("command_id", String(36), nullable=False),
    # Pruning a command deletes its task ids.
    Index("command_task_ids_command_id", "command_id"),
)

dead_letters = Table(
    "dead_letters",
    metadata,
    Column("id", Position, primary_key=True, autoincrement=True),
    Column("source", String(64), nullable=False),
    Column("reason", Text, nullable=False),
    Column("body", Text, nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    # Pruning by age (store/retention.py).
    Index("dead_letters_recorded_at", "recorded_at"),
)
