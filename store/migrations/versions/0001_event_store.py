"""Event store: events, snapshots, command log.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

Json = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    op.create_table(
        "events",
        sa.Column(
            "position",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("event_id", sa.Uuid(as_uuid=False), nullable=False),
        sa.Column("aggregate_type", sa.String(64), nullable=False),
        sa.Column("aggregate_id", sa.String(128), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("event_type", sa.String(64), nullable=False),
        sa.Column("schema_version", sa.SmallInteger, nullable=False),
        sa.Column("data", Json, nullable=False),
        sa.Column("metadata", Json, nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("event_id", name="events_event_id_key"),
        # Optimistic concurrency: one event per version per stream, whoever commits first.
        sa.UniqueConstraint(
            "aggregate_type", "aggregate_id", "version", name="events_stream_version_key"
        ),
        sa.CheckConstraint("version > 0", name="events_version_positive"),
        sqlite_autoincrement=True,
    )
    if postgres:
        # The id of the inserting transaction, for the gap-free global reader.
        op.execute(
            "ALTER TABLE events ADD COLUMN transaction_id xid8 NOT NULL "
            "DEFAULT pg_current_xact_id()"
        )
        op.create_index("events_transaction_position", "events", ["transaction_id", "position"])

    op.create_table(
        "snapshots",
        sa.Column("aggregate_type", sa.String(64), primary_key=True),
        sa.Column("aggregate_id", sa.String(128), primary_key=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("schema_version", sa.SmallInteger, nullable=False),
        sa.Column("state", Json, nullable=False),
        sa.Column("taken_at", sa.DateTime(timezone=True), nullable=False),
    )

    op.create_table(
        "command_log",
        sa.Column("command_id", sa.String(36), primary_key=True),
        sa.Column("command_type", sa.String(64), nullable=False),
        sa.Column("aggregate_id", sa.String(128)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("outcome", Json, nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("command_log")
    op.drop_table("snapshots")
    op.drop_table("events")
