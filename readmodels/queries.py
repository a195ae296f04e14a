"""Dashboard queries: plain SQL on the read-model tables, one query per request.

Lists page by keyset (newest first): the cursor is the last row's ``(created_at,
order_id)``, so a page costs the same however deep it is.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, desc, select, tuple_

from readmodels.tables import (
    customer_stats,
    order_lines,
    order_summary,
    product_sales,
    revenue_daily,
)
from store.codec import as_utc

MAX_LIMIT = 1_000


class BadCursor(ValueError):
    """The cursor was not one this system handed out."""


@dataclass(frozen=True)
class Page:
    rows: list[dict[str, Any]]
    next_cursor: str | None


def show_order(conn: Connection, order_id: str) -> dict[str, Any] | None:
    """The order's summary with its lines, or None."""
    query = (
        select(
            order_summary, order_lines.c.item_id, order_lines.c.quantity, order_lines.c.unit_price
        )
        .outerjoin(order_lines, order_lines.c.order_id == order_summary.c.order_id)
        .where(order_summary.c.order_id == order_id)
        .order_by(order_lines.c.item_id)
    )
    rows = conn.execute(query).mappings().all()
    if not rows:
        return None
    summary = {column.name: _plain(rows[0][column.name]) for column in order_summary.columns}
    summary["lines"] = [
        {"item_id": row["item_id"], "quantity": row["quantity"], "unit_price": row["unit_price"]}
        for row in rows
        if row["item_id"] is not None
    ]
    return summary


def list_orders(
    conn: Connection,
    *,
    status: str | None = None,
    customer_id: str | None = None,
    limit: int = 50,
    after: str | None = None,
) -> Page:
    limit = _limit(limit)
    query = select(order_summary).order_by(
        desc(order_summary.c.created_at), desc(order_summary.c.order_id)
    )
    if status is not None:
        query = query.where(order_summary.c.status == status)
    if customer_id is not None:
        query = query.where(order_summary.c.customer_id == customer_id)
    if after is not None:
        created_at, order_id = _decode_cursor(after)
        # A row-value comparison, which both databases answer from the index.
        key = tuple_(order_summary.c.created_at, order_summary.c.order_id)
        query = query.where(key < (created_at, order_id))
    rows = [_plain_row(row) for row in conn.execute(query.limit(limit + 1)).mappings()]
    more = len(rows) > limit
    rows = rows[:limit]
    cursor = _encode_cursor(rows[-1]["created_at"], rows[-1]["order_id"]) if more else None
    return Page(rows, cursor)


def top_products(conn: Connection, limit: int = 10) -> list[dict[str, Any]]:
    query = (
        select(product_sales)
        .order_by(desc(product_sales.c.revenue), product_sales.c.item_id)
        .limit(_limit(limit))
    )
    return [_plain_row(row) for row in conn.execute(query).mappings()]


def revenue(conn: Connection, days: int = 30, today: date | None = None) -> list[dict[str, Any]]:
    """Paid revenue per UTC day for the last ``days`` days, oldest first."""
    today = today or datetime.now(UTC).date()
    since = today - timedelta(days=max(days, 1) - 1)
    query = (
        select(revenue_daily)
        .where(revenue_daily.c.day >= since, revenue_daily.c.day <= today)
        .order_by(revenue_daily.c.day)
    )
    return [_plain_row(row) for row in conn.execute(query).mappings()]


def top_customers(conn: Connection, limit: int = 10) -> list[dict[str, Any]]:
    query = (
        select(customer_stats)
        .order_by(desc(customer_stats.c.lifetime_value), customer_stats.c.customer_id)
        .limit(_limit(limit))
    )
    return [_plain_row(row) for row in conn.execute(query).mappings()]


def _limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be between 1 and {MAX_LIMIT}, got {limit}")
    return limit


def _plain_row(row: Any) -> dict[str, Any]:
    return {key: _plain(value) for key, value in dict(row).items()}


def _plain(value: Any) -> Any:
    return as_utc(value) if isinstance(value, datetime) else value


def _encode_cursor(created_at: datetime, order_id: str) -> str:
    raw = json.dumps([as_utc(created_at).isoformat(), order_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created_at, order_id = json.loads(raw)
        return datetime.fromisoformat(created_at), str(order_id)
    except (ValueError, TypeError) as bad:
        raise BadCursor(f"not a cursor from this system: {cursor[:40]!r}") from bad


def to_json(value: Any) -> Any:
    """JSON-ready copies for ``--json`` output: money as strings, times as ISO 8601."""
    if isinstance(value, dict):
        return {key: to_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [to_json(item) for item in value]
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return value
