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

from sqlalchemy import Connection, desc, func, select, tuple_

from domain.events import AGGREGATE_TYPE
from readmodels.tables import (
    customer_stats,
    order_lines,
    order_summary,
    product_sales,
    revenue_daily,
)
from store.codec import as_utc
from store.schema import command_log, events

MAX_LIMIT = 1_000
PRODUCT_ORDERS = {"revenue": product_sales.c.revenue, "units": product_sales.c.units_sold}


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
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 50,
    after: str | None = None,
) -> Page:
    """Orders, newest first (by creation), a page at a time; ``since`` and ``until``
    bound their creation time (``since`` included, ``until`` not)."""
    limit = _limit(limit)
    query = select(order_summary).order_by(
        desc(order_summary.c.created_at), desc(order_summary.c.order_id)
    )
    if status is not None:
        query = query.where(order_summary.c.status == status)
    if customer_id is not None:
        query = query.where(order_summary.c.customer_id == customer_id)
    if since is not None:
        query = query.where(order_summary.c.created_at >= since)
    if until is not None:
        query = query.where(order_summary.c.created_at < until)
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


def top_products(conn: Connection, limit: int = 10, by: str = "revenue") -> list[dict[str, Any]]:
    """Items of paid orders, by ``revenue`` or by ``units`` sold."""
    if by not in PRODUCT_ORDERS:
        raise ValueError(f"by must be one of {', '.join(PRODUCT_ORDERS)}, got {by!r}")
    query = (
        select(product_sales)
        # Ties by id, highest first: the index is read backwards, with no sort.
        .order_by(desc(PRODUCT_ORDERS[by]), desc(product_sales.c.item_id))
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
        .order_by(desc(customer_stats.c.lifetime_value), desc(customer_stats.c.customer_id))
        .limit(_limit(limit))
    )
    return [_plain_row(row) for row in conn.execute(query).mappings()]


def order_history(conn: Connection, order_id: str) -> dict[str, list[dict[str, Any]]]:
    """The order's events (type, version, time, data) and the commands sent for it with
    their outcomes, oldest first: what a timeline shows."""
    stored = conn.execute(
        select(
            events.c.event_type,
            events.c.version,
            events.c.recorded_at,
            events.c.data,
            events.c.metadata["command_id"].as_string().label("command_id"),
        )
        .where(events.c.aggregate_type == AGGREGATE_TYPE, events.c.aggregate_id == order_id)
        .order_by(events.c.version)
    ).mappings()
    commands = conn.execute(
        select(
            command_log.c.command_id,
            command_log.c.command_type,
            command_log.c.status,
            command_log.c.outcome,
            command_log.c.recorded_at,
        )
        .where(command_log.c.aggregate_id == order_id)
        .order_by(command_log.c.recorded_at, command_log.c.command_id)
    ).mappings()
    return {
        "events": [
            {
                "event_type": row["event_type"],
                "version": row["version"],
                "recorded_at": as_utc(row["recorded_at"]),
                "data": row["data"],
                "command_id": row["command_id"],
            }
            for row in stored
        ],
        "commands": [
            {
                "command_id": row["command_id"],
                "command_type": row["command_type"],
                "status": row["status"],
                "error": row["outcome"].get("error"),
                "message": row["outcome"].get("message"),
                "recorded_at": as_utc(row["recorded_at"]),
            }
            for row in commands
        ],
    }


def overview(conn: Connection, now: datetime | None = None) -> dict[str, Any]:
    """What the dashboard's first screen shows: orders and revenue today, in 7 and in 30
    days, and orders by status."""
    now = now or datetime.now(UTC)
    today = now.date()
    periods = {"today": 1, "7 days": 7, "30 days": 30}
    figures: dict[str, Any] = {}
    for label, days in periods.items():
        start = today - timedelta(days=days - 1)
        created = conn.execute(
            select(func.count()).where(
                order_summary.c.created_at >= datetime.combine(start, datetime.min.time(), UTC)
            )
        ).scalar_one()
        paid = conn.execute(
            select(
                func.coalesce(func.sum(revenue_daily.c.orders_paid), 0),
                func.coalesce(func.sum(revenue_daily.c.revenue), 0),
            ).where(revenue_daily.c.day >= start, revenue_daily.c.day <= today)
        ).one()
        figures[label] = {
            "orders": int(created),
            "orders_paid": int(paid[0]),
            "revenue": Decimal(paid[1]).quantize(Decimal("0.01")),
        }
    by_status = dict.fromkeys(("created", "paid", "cancelled"), 0)
    for status, count in conn.execute(
        select(order_summary.c.status, func.count()).group_by(order_summary.c.status)
    ):
        by_status[status] = int(count)
    return {"periods": figures, "by_status": by_status}


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
