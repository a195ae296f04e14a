"""Task ids that differ from their command's id, so that an outcome is found by either.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "command_task_ids",
        sa.Column("task_id", sa.String(255), primary_key=True),
        sa.Column("command_id", sa.String(36), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("command_task_ids")
