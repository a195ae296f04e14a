"""Read models for dashboards, projection checkpoints and parked events.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from store.money import Money

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "order_summary",
        sa.Column("order_id", sa.String(128), primary_key=True),
        sa.Column("customer_id", sa.String(128), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("item_count", sa.Integer, nullable=False),
        sa.Column("units", sa.Integer, nullable=False),
        sa.Column("total", Money, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
        sa.Column("paid_at", Timestamp),
        sa.Column("cancelled_at", Timestamp),
        sa.Column("payment_method", sa.String(128)),
        sa.Column("cancel_reason", sa.Text),
    )
    op.create_index("order_summary_created", "order_summary", ["created_at", "order_id"])
    op.create_index(
        "order_summary_status_created", "order_summary", ["status", "created_at", "order_id"]
    )
    op.create_index(
        "order_summary_customer_created",
        "order_summary",
        ["customer_id", "created_at", "order_id"],
    )

    op.create_table(
        "order_lines",
        sa.Column("order_id", sa.String(128), primary_key=True),
        sa.Column("item_id", sa.String(128), primary_key=True),
        sa.Column("quantity", sa.Integer, nullable=False),
        sa.Column("unit_price", Money, nullable=False),
    )

    op.create_table(
        "customer_stats",
        sa.Column("customer_id", sa.String(128), primary_key=True),
        sa.Column("orders_created", sa.Integer, nullable=False),
        sa.Column("orders_paid", sa.Integer, nullable=False),
        sa.Column("orders_cancelled", sa.Integer, nullable=False),
        sa.Column("lifetime_value", Money, nullable=False),
        sa.Column("last_order_at", Timestamp, nullable=False),
    )
    op.create_index("customer_stats_value", "customer_stats", ["lifetime_value", "customer_id"])

    op.create_table(
        "product_sales",
        sa.Column("item_id", sa.String(128), primary_key=True),
        sa.Column("units_sold", sa.Integer, nullable=False),
        sa.Column("revenue", Money, nullable=False),
        sa.Column("orders_count", sa.Integer, nullable=False),
    )
    op.create_index("product_sales_revenue", "product_sales", ["revenue", "item_id"])

    op.create_table(
        "revenue_daily",
        sa.Column("day", sa.Date, primary_key=True),
        sa.Column("orders_paid", sa.Integer, nullable=False),
        sa.Column("revenue", Money, nullable=False),
    )

    op.create_table(
        "projection_checkpoints",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("transaction_id", sa.BigInteger, nullable=False),
        sa.Column("position", sa.BigInteger, nullable=False),
        sa.Column("stuck", sa.Boolean, nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("updated_at", Timestamp, nullable=False),
    )

    op.create_table(
        "parked_events",
        sa.Column("projection", sa.String(64), primary_key=True),
        sa.Column("event_id", sa.String(36), primary_key=True),
        sa.Column("transaction_id", sa.BigInteger, nullable=False),
        sa.Column("position", sa.BigInteger, nullable=False),
        sa.Column("event_type", sa.String(64), nullable=False),
        sa.Column("error", sa.Text, nullable=False),
        sa.Column("parked_at", Timestamp, nullable=False),
    )


def downgrade() -> None:
    for table in (
        "parked_events",
        "projection_checkpoints",
        "revenue_daily",
        "product_sales",
        "customer_stats",
        "order_lines",
        "order_summary",
    ):
        op.drop_table(table)
