"""``store.types.Money`` at the dialect level: integer cents on SQLite, NUMERIC(20, 2)
passed through on PostgreSQL. The database round trip is in
tests/integration/test_read_model_queries.py."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import BigInteger, Numeric
from sqlalchemy.dialects import postgresql, sqlite

from store.types import Money

SQLITE = sqlite.dialect()
POSTGRES = postgresql.dialect()


@pytest.mark.parametrize(
    ("amount", "cents"),
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
def test_sqlite_stores_integer_cents_and_reads_back_exact_decimals(amount: str, cents: int) -> None:
    money = Money()

    stored = money.process_bind_param(Decimal(amount), SQLITE)
    loaded = money.process_result_value(stored, SQLITE)

    assert stored == cents
    assert type(stored) is int
    assert isinstance(loaded, Decimal)
    assert loaded == Decimal(amount)
    assert loaded.as_tuple().exponent == -2  # always two places: "0.10", never "0.1"


def test_sqlite_binds_integers_as_whole_currency_units() -> None:
    assert Money().process_bind_param(Decimal(7), SQLITE) == 700


def test_sqlite_reads_cents_that_arrive_as_text_or_large_ints() -> None:
    money = Money()

    assert money.process_result_value("150", SQLITE) == Decimal("1.50")
    assert str(money.process_result_value(10**16 + 1, SQLITE)) == "100000000000000.01"


def test_postgresql_passes_decimals_through_and_quantizes_results() -> None:
    money = Money()

    assert money.process_bind_param(Decimal("1.50"), POSTGRES) == Decimal("1.50")
    assert str(money.process_result_value(Decimal("0.5"), POSTGRES)) == "0.50"
    assert str(money.process_result_value(Decimal("6"), POSTGRES)) == "6.00"


@pytest.mark.parametrize("dialect", [SQLITE, POSTGRES], ids=["sqlite", "postgresql"])
def test_null_stays_null(dialect: object) -> None:
    money = Money()

    assert money.process_bind_param(None, dialect) is None  # type: ignore[arg-type]
    assert money.process_result_value(None, dialect) is None  # type: ignore[arg-type]


def test_the_column_type_per_dialect() -> None:
    on_sqlite = Money().load_dialect_impl(SQLITE)
    on_postgres = Money().load_dialect_impl(POSTGRES)

    assert isinstance(on_sqlite, BigInteger)
    assert isinstance(on_postgres, Numeric)
    assert (on_postgres.precision, on_postgres.scale, on_postgres.asdecimal) == (20, 2, True)


def test_sums_of_cents_are_exact() -> None:
    money = Money()
    stored = [money.process_bind_param(Decimal(p), SQLITE) for p in ("0.10", "0.10", "0.10")]
    stored.append(money.process_bind_param(Decimal("0.20"), SQLITE))

    total = money.process_result_value(sum(stored), SQLITE)

    assert str(total) == "0.50"
