"""Column types SQLite lacks."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, Dialect, TypeDecorator

CENT = Decimal("0.01")


class Cents(TypeDecorator[Decimal]):
    """Exact money as integer cents: SQLite has no exact decimal type (its NUMERIC is a
    float)."""

    impl = BigInteger
    cache_ok = True

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Any:
        return None if value is None else int((value / CENT).to_integral_exact())

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        return None if value is None else (Decimal(value) * CENT).quantize(CENT)
