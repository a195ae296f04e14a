"""Indexes the dashboards' queries need: every list reads the first rows of an index.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("order_lines_item", "order_lines", ["item_id"])
    op.create_index("order_summary_paid", "order_summary", ["paid_at"])
    op.create_index("product_sales_units", "product_sales", ["units_sold", "item_id"])


def downgrade() -> None:
    op.drop_index("product_sales_units", "product_sales")
    op.drop_index("order_summary_paid", "order_summary")
    op.drop_index("order_lines_item", "order_lines")
