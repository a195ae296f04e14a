"""Shared fixtures: real databases for integration tests, per the project's standards.

PostgreSQL comes from ORDERS_TEST_DATABASE_URL (default: the local trust-auth server,
database ``orders_test``, created if missing). When it cannot be reached the tests that
need it skip with a loud reason, unless ORDERS_REQUIRE_SERVICES=1 (CI sets it): then
they fail, so a missing service can never turn CI green.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from store import build_engine, migrate

DEFAULT_TEST_DATABASE = "postgresql+psycopg2://postgres@127.0.0.1:5432/orders_test"
TABLES = (
    "events",
    "snapshots",
    "command_log",
    "dead_letters",
    "order_summary",
    "order_lines",
    "customer_stats",
    "product_sales",
    "revenue_daily",
    "projection_checkpoints",
    "parked_events",
)


def services_required() -> bool:
    return os.environ.get("ORDERS_REQUIRE_SERVICES", "") not in ("", "0", "false")


def unavailable(service: str, error: Exception) -> None:
    message = f"{service} is not reachable ({type(error).__name__}: {error})"
    if services_required():
        pytest.fail(f"{message}; ORDERS_REQUIRE_SERVICES is set, so this is a failure")
    pytest.skip(f"SKIPPED LOUDLY: {message}; set ORDERS_REQUIRE_SERVICES=1 to fail instead")


def _ensure_database(url: str) -> None:
    parsed = make_url(url)
    admin = create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            exists = conn.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": parsed.database}
            ).first()
            if not exists:
                conn.execute(text(f'CREATE DATABASE "{parsed.database}"'))
    finally:
        admin.dispose()


@pytest.fixture(scope="session")
def postgres_url() -> str:
    url = os.environ.get("ORDERS_TEST_DATABASE_URL", DEFAULT_TEST_DATABASE)
    try:
        _ensure_database(url)
    except OperationalError as error:
        unavailable("PostgreSQL", error)
    return url


@pytest.fixture(scope="session")
def postgres_engine(postgres_url: str) -> Iterator[Engine]:
    engine = build_engine(postgres_url, pool_size=20, max_overflow=20)
    with engine.begin() as conn:
        # A fresh schema per run: migrations are tested from nothing every time.
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    migrate(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def pg(postgres_engine: Engine) -> Engine:
    """The migrated PostgreSQL engine with empty tables."""
    with postgres_engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY"))
    return postgres_engine


@pytest.fixture
def sqlite(tmp_path: Path) -> Iterator[Engine]:
    """A migrated SQLite database in a fresh file."""
    engine = build_engine(f"sqlite:///{tmp_path / 'orders.db'}")
    migrate(engine)
    yield engine
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def engine(request: pytest.FixtureRequest) -> Engine:
    """Each backend in turn, for the store contract suite."""
    fixture: Engine = request.getfixturevalue("sqlite" if request.param == "sqlite" else "pg")
    return fixture
