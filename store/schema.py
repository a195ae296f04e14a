"""Tables as SQLAlchemy Core sees them for queries. Alembic migrations own the DDL.

``events.transaction_id`` (PostgreSQL only, ``xid8``) is left out here on purpose: the
database fills it, and only the global reader, in its own SQL, reads it.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    Uuid,
)
from sqlalchemy.dialects.postgresql import JSONB

metadata = MetaData()

Json = JSON().with_variant(JSONB(), "postgresql")
Position = BigInteger().with_variant(Integer(), "sqlite")

events = Table(
    "events",
    metadata,
    Column("position", Position, primary_key=True, autoincrement=True),
    Column("event_id", Uuid(as_uuid=False), nullable=False, unique=True),
    Column("aggregate_type", String(64), nullable=False),
    Column("aggregate_id", String(128), nullable=False),
    Column("version", Integer, nullable=False),
    Column("event_type", String(64), nullable=False),
    Column("schema_version", SmallInteger, nullable=False),
    Column("data", Json, nullable=False),
    Column("metadata", Json, nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
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
)

dead_letters = Table(
    "dead_letters",
    metadata,
    Column("id", Position, primary_key=True, autoincrement=True),
    Column("source", String(64), nullable=False),
    Column("reason", Text, nullable=False),
    Column("body", Text, nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
)
