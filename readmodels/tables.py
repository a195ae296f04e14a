"""Read-model tables: denormalised for the dashboards' queries, with their indexes."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

from store.money import Money

metadata = MetaData()
Timestamp = DateTime(timezone=True)

order_summary = Table(
    "order_summary",
    metadata,
    Column("order_id", String(128), primary_key=True),
    Column("customer_id", String(128), nullable=False),
    Column("status", String(16), nullable=False),
    Column("item_count", Integer, nullable=False),
    Column("units", Integer, nullable=False),
    Column("total", Money, nullable=False),
    Column("version", Integer, nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Column("updated_at", Timestamp, nullable=False),
    Column("paid_at", Timestamp),
    Column("cancelled_at", Timestamp),
    Column("payment_method", String(128)),
    Column("cancel_reason", Text),
    # Keyset pages of the newest orders, overall, by status and by customer.
    Index("order_summary_created", "created_at", "order_id"),
    Index("order_summary_status_created", "status", "created_at", "order_id"),
    Index("order_summary_customer_created", "customer_id", "created_at", "order_id"),
    # Orders paid in a period.
    Index("order_summary_paid", "paid_at"),
)

order_lines = Table(
    "order_lines",
    metadata,
    Column("order_id", String(128), primary_key=True),
    Column("item_id", String(128), primary_key=True),
    Column("quantity", Integer, nullable=False),
    Column("unit_price", Money, nullable=False),
    # Which orders hold an item (a product's page, support questions).
    Index("order_lines_item", "item_id"),
)

customer_stats = Table(
    "customer_stats",
    metadata,
    Column("customer_id", String(128), primary_key=True),
    Column("orders_created", Integer, nullable=False),
    Column("orders_paid", Integer, nullable=False),
    Column("orders_cancelled", Integer, nullable=False),
    Column("lifetime_value", Money, nullable=False),
    Column("last_order_at", Timestamp, nullable=False),
    # The top list reads it backwards (highest value, then highest id): no sort.
    Index("customer_stats_value", "lifetime_value", "customer_id"),
)

product_sales = Table(
    "product_sales",
    metadata,
    Column("item_id", String(128), primary_key=True),
    Column("units_sold", Integer, nullable=False),
    Column("revenue", Money, nullable=False),
    Column("orders_count", Integer, nullable=False),
    # Read backwards by the top lists, as above.
    Index("product_sales_revenue", "revenue", "item_id"),
    Index("product_sales_units", "units_sold", "item_id"),
)

revenue_daily = Table(
    "revenue_daily",
    metadata,
    Column("day", Date, primary_key=True),
    Column("orders_paid", Integer, nullable=False),
    Column("revenue", Money, nullable=False),
)

projection_checkpoints = Table(
    "projection_checkpoints",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("transaction_id", BigInteger, nullable=False),
    Column("position", BigInteger, nullable=False),
    Column("stuck", Boolean, nullable=False),
    Column("error", Text),
    Column("updated_at", Timestamp, nullable=False),
)

parked_events = Table(
    "parked_events",
    metadata,
    Column("projection", String(64), primary_key=True),
    Column("event_id", String(36), primary_key=True),
    Column("transaction_id", BigInteger, nullable=False),
    Column("position", BigInteger, nullable=False),
    Column("event_type", String(64), nullable=False),
    Column("error", Text, nullable=False),
    Column("parked_at", Timestamp, nullable=False),
)
