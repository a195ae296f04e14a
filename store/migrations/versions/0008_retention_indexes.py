"""Indexes for pruning by age: the command log and the dead letters by when they were
recorded, and the task ids of a command by its id (pruning a command deletes them).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("command_log_recorded_at", "command_log", ["recorded_at"])
    op.create_index("dead_letters_recorded_at", "dead_letters", ["recorded_at"])
    op.create_index("command_task_ids_command_id", "command_task_ids", ["command_id"])


def downgrade() -> None:
    op.drop_index("command_task_ids_command_id", "command_task_ids")
    op.drop_index("dead_letters_recorded_at", "dead_letters")
    op.drop_index("command_log_recorded_at", "command_log")
