"""An index of the command log by order, for an order's timeline.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("command_log_order", "command_log", ["aggregate_id", "recorded_at"])


def downgrade() -> None:
    op.drop_index("command_log_order", "command_log")
