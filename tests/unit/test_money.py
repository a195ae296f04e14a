"""``store.money.Money`` at the dialect level: integer cents on SQLite (``Cents``),
NUMERIC(20, 2) on PostgreSQL, which hands back two places itself. The database round
trip is in tests/integration/test_read_model_queries.py."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import BigInteger, Numeric
from sqlalchemy.dialects import postgresql, sqlite

from store.money import Money

SQLITE = sqlite.dialect()
POSTGRES = postgresql.dialect()


def cents() -> Any:
    """Money as SQLite stores it."""
    return Money.dialect_impl(SQLITE)


@pytest.mark.parametrize(
    ("amount", "in_cents"),
    [
        ("0.00", 0),
        ("0.01", 1),
        ("0.10", 10),
        ("0.1", 10),
        ("1.50", 150),
        ("6", 600),
        ("-12.34", -1234),
        ("999999999999.99", 99999999999999),
    ],
)
def test_sqlite_stores_integer_cents_and_reads_back_exact_decimals(
    amount: str, in_cents: int
) -> None:
    money = cents()

    stored = money.process_bind_param(Decimal(amount), SQLITE)
    loaded = money.process_result_value(stored, SQLITE)

    assert stored == in_cents
    assert type(stored) is int
    assert isinstance(loaded, Decimal)
    assert loaded == Decimal(amount)
    assert loaded.as_tuple().exponent == -2  # always two places: "0.10", never "0.1"


def test_sqlite_binds_integers_as_whole_currency_units() -> None:
    assert cents().process_bind_param(Decimal(7), SQLITE) == 700


def test_sqlite_reads_cents_that_arrive_as_text_or_large_ints() -> None:
    money = cents()

    assert money.process_result_value("150", SQLITE) == Decimal("1.50")
    assert str(money.process_result_value(10**16 + 1, SQLITE)) == "100000000000000.01"


def test_null_stays_null_on_sqlite() -> None:
    money = cents()

    assert money.process_bind_param(None, SQLITE) is None
    assert money.process_result_value(None, SQLITE) is None


def test_the_column_type_per_dialect() -> None:
    on_sqlite = Money.dialect_impl(SQLITE)
    on_postgres = Money.dialect_impl(POSTGRES)

    assert isinstance(on_sqlite.impl_instance, BigInteger)
    assert isinstance(on_postgres, Numeric)
    assert (on_postgres.precision, on_postgres.scale, on_postgres.asdecimal) == (20, 2, True)


def test_sums_of_cents_are_exact() -> None:
    money = cents()
    stored = [money.process_bind_param(Decimal(p), SQLITE) for p in ("0.10", "0.10", "0.10")]
    stored.append(money.process_bind_param(Decimal("0.20"), SQLITE))

    total = money.process_result_value(sum(stored), SQLITE)

    assert str(total) == "0.50"
