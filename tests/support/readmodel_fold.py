"""The read models as the end-to-end tests expect them: an independent, deliberately plain
fold of the raw ``events`` rows, and the tables as PostgreSQL holds them.

Nothing here imports the projections, the domain's ``evolve`` or the event codec: the
fold reads the JSON payloads itself, so a bug shared by the production projections and
the production decoder cannot hide behind a comparison with itself. Money is ``Decimal``
throughout, never a float; the tables are read with plain SQL (psycopg2's own
``Decimal`` for NUMERIC), not through the project's ``Money`` column type.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, Inexact, localcontext
from typing import Any

from sqlalchemy import Connection, Engine, text

CENT = Decimal("0.01")
ZERO = Decimal("0.00")

# Each read-model table and its primary key, in the order the key is written.
KEYS: dict[str, tuple[str, ...]] = {
    "order_summary": ("order_id",),
    "order_lines": ("order_id", "item_id"),
    "customer_stats": ("customer_id",),
    "product_sales": ("item_id",),
    "revenue_daily": ("day",),
}
MONEY = {
    "order_summary": ("total",),
    "order_lines": ("unit_price",),
    "customer_stats": ("lifetime_value",),
    "product_sales": ("revenue",),
    "revenue_daily": ("revenue",),
}
# Every table the read side writes, for clearing and byte-for-byte snapshots.
READ_SIDE_TABLES = (*KEYS, "projection_checkpoints", "parked_events")

Models = dict[str, dict[tuple[Any, ...], dict[str, Any]]]


@dataclass(frozen=True)
class LogRow:
    transaction_id: int
    position: int
    order_id: str
    version: int
    event_type: str
    schema_version: int
    data: dict[str, Any]
    recorded_at: datetime


def read_log(engine: Engine) -> list[LogRow]:
    """Every committed event, in the global log's order: (transaction id, position),
    the transaction id read as text and sorted as a number."""
    query = text(
        "SELECT transaction_id::text AS txid, position, aggregate_id, version, event_type, "
        "schema_version, data, recorded_at FROM events"
    )
    with engine.connect() as conn:
        rows = conn.execute(query).mappings().all()
    log = [
        LogRow(
            int(row["txid"]),
            int(row["position"]),
            row["aggregate_id"],
            row["version"],
            row["event_type"],
            row["schema_version"],
            dict(row["data"]),
            row["recorded_at"],
        )
        for row in rows
    ]
    return sorted(log, key=lambda row: (row.transaction_id, row.position))


def money(value: Decimal) -> Decimal:
    """``value`` at cents, refusing any value that is not a whole number of cents."""
    assert isinstance(value, Decimal), f"money must be a Decimal, got {value!r}"
    with localcontext() as context:
        context.traps[Inexact] = True
        return value.quantize(CENT)


@dataclass
class _Order:
    order_id: str
    customer_id: str
    created_at: datetime
    status: str = "created"
    version: int = 0
    updated_at: datetime | None = None
    paid_at: datetime | None = None
    cancelled_at: datetime | None = None
    payment_method: str | None = None
    cancel_reason: str | None = None
    # item -> [quantity, unit price]
    lines: dict[str, list[Any]] | None = None

    def total(self) -> Decimal:
        return sum((q * p for q, p in (self.lines or {}).values()), ZERO)


def fold(log: list[LogRow]) -> Models:
    """The five read models, computed from the raw log rows."""
    orders: dict[str, _Order] = {}
    customers: dict[str, dict[str, Any]] = {}
    products: dict[str, dict[str, Any]] = {}
    days: dict[date, dict[str, Any]] = {}

    for row in log:
        at = row.recorded_at
        if row.event_type == "OrderCreated":
            assert row.schema_version == 1, row
            assert row.order_id not in orders, f"{row.order_id} created twice"
            assert row.version == 1, row
            customer = str(row.data["customer_id"])
            orders[row.order_id] = _Order(row.order_id, customer, at, lines={})
            stats = customers.setdefault(
                customer,
                {
                    "customer_id": customer,
                    "orders_created": 0,
                    "orders_paid": 0,
                    "orders_cancelled": 0,
                    "lifetime_value": ZERO,
                    "last_order_at": at,
                },
            )
            stats["orders_created"] += 1
            stats["last_order_at"] = max(stats["last_order_at"], at)
        order = orders[row.order_id]
        assert row.version == order.version + 1, (
            f"{row.order_id}: v{row.version} after v{order.version}"
        )
        lines = order.lines
        assert lines is not None
        match row.event_type:
            case "OrderCreated":
                pass
            case "ItemAdded":
                assert row.schema_version == 2, row
                price = Decimal(row.data["price"])  # stored as a decimal string
                quantity = row.data["quantity"]
                assert isinstance(quantity, int) and not isinstance(quantity, bool), row
                held = lines.get(row.data["item_id"], [0, price])[0]
                lines[str(row.data["item_id"])] = [held + quantity, price]
            case "ItemRemoved":
                del lines[str(row.data["item_id"])]
            case "OrderPaid":
                order.status = "paid"
                order.paid_at = at
                order.payment_method = str(row.data["payment_method"])
                total = order.total()
                customers[order.customer_id]["orders_paid"] += 1
                customers[order.customer_id]["lifetime_value"] += total
                for item_id, (quantity, price) in lines.items():
                    sold = products.setdefault(
                        item_id,
                        {"item_id": item_id, "units_sold": 0, "revenue": ZERO, "orders_count": 0},
                    )
                    sold["units_sold"] += quantity
                    sold["revenue"] += quantity * price
                    sold["orders_count"] += 1
                day = at.astimezone(UTC).date()
                daily = days.setdefault(day, {"day": day, "orders_paid": 0, "revenue": ZERO})
                daily["orders_paid"] += 1
                daily["revenue"] += total
            case "OrderCancelled":
                order.status = "cancelled"
                order.cancelled_at = at
                order.cancel_reason = str(row.data["reason"])
                customers[order.customer_id]["orders_cancelled"] += 1
            case other:
                raise AssertionError(f"the test's fold does not know event type {other!r}")
        order.version = row.version
        order.updated_at = at

    summary = {
        (o.order_id,): {
            "order_id": o.order_id,
            "customer_id": o.customer_id,
            "status": o.status,
            "item_count": len(o.lines or {}),
            "units": sum(q for q, _ in (o.lines or {}).values()),
            "total": o.total(),
            "version": o.version,
            "created_at": o.created_at,
            "updated_at": o.updated_at,
            "paid_at": o.paid_at,
            "cancelled_at": o.cancelled_at,
            "payment_method": o.payment_method,
            "cancel_reason": o.cancel_reason,
        }
        for o in orders.values()
    }
    order_lines = {
        (o.order_id, item_id): {
            "order_id": o.order_id,
            "item_id": item_id,
            "quantity": quantity,
            "unit_price": price,
        }
        for o in orders.values()
        for item_id, (quantity, price) in (o.lines or {}).items()
    }
    models: Models = {
        "order_summary": summary,
        "order_lines": order_lines,
        "customer_stats": {(c["customer_id"],): c for c in customers.values()},
        "product_sales": {(p["item_id"],): p for p in products.values()},
        "revenue_daily": {(d["day"],): d for d in days.values()},
    }
    return _with_exact_money(models)


def _with_exact_money(models: Models) -> Models:
    return {
        table: {
            key: {
                column: money(value) if column in MONEY[table] else value
                for column, value in row.items()
            }
            for key, row in rows.items()
        }
        for table, rows in models.items()
    }


def read_models(engine: Engine) -> Models:
    """The five tables as stored, keyed like ``fold``'s result."""
    models: Models = {}
    with engine.connect() as conn:
        for table, key in KEYS.items():
            rows = conn.execute(text(f"SELECT * FROM {table}")).mappings().all()
            models[table] = {tuple(row[c] for c in key): dict(row) for row in rows}
    return models


def assert_models_equal_the_fold(engine: Engine) -> Models:
    """Every table equals the fold of the events, row for row and column for column;
    money columns are ``Decimal`` with exactly two places, on both sides."""
    expected = fold(read_log(engine))
    actual = read_models(engine)
    for table in KEYS:
        want, have = expected[table], actual[table]
        missing = sorted(want.keys() - have.keys(), key=repr)
        extra = sorted(have.keys() - want.keys(), key=repr)
        assert not missing and not extra, (
            f"{table}: missing {missing[:5]} (of {len(missing)}), "
            f"unexpected {extra[:5]} (of {len(extra)})"
        )
        wrong: list[tuple[Any, ...]] = []
        for key in sorted(want, key=repr):
            for column in MONEY[table]:
                stored = have[key][column]
                assert isinstance(stored, Decimal), f"{table} {key} {column}: {stored!r}"
                assert stored.as_tuple().exponent == -2, f"{table} {key} {column}: {stored!r}"
                # Exact: same digits, same scale (a float or a rounding would show here).
                if str(stored) != str(want[key][column]):
                    wrong.append((key, column, stored, want[key][column]))
            if have[key] != want[key]:
                wrong.append((key, "row", have[key], want[key]))
        assert not wrong, f"{table}: {len(wrong)} wrong, first: {wrong[:3]}"
    return expected


def snapshot_read_side(conn: Connection) -> dict[str, list[str]]:
    """Every read-side table's rows as PostgreSQL's own text of each record, sorted:
    equal snapshots mean byte-for-byte equal tables, timestamps and scales included."""
    return {
        table: list(conn.execute(text(f"SELECT t::text AS r FROM {table} t ORDER BY r")).scalars())
        for table in READ_SIDE_TABLES
    }


def clear_read_side(engine: Engine) -> None:
    """Empty the read models, checkpoints and parked events (``pg`` empties the events)."""
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {', '.join(READ_SIDE_TABLES)}"))


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)
