"""Shared fixtures: real databases for integration tests, per the project's standards.

PostgreSQL is the server of ORDERS_TEST_DATABASE_URL (default: the local trust-auth
server). Each run makes a database of its own there, named after that URL's database
and a random run id (``orders_test_3f9a1c``), and drops it at the end: two runs on one
server, a developer's and CI's, never see each other's rows. When the server cannot be
reached the tests that need it skip with a loud reason, unless ORDERS_REQUIRE_SERVICES=1
(CI sets it): then they fail, so a missing service can never turn CI green.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from bootstrap import migrate
from store import build_engine

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


RUN_ID = uuid.uuid4().hex[:6]
"""This run's suffix for the databases and the Redis key space it makes."""


def _admin(url: str) -> Engine:
    return create_engine(make_url(url).set(database="postgres"), isolation_level="AUTOCOMMIT")


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A database of this run's own: created empty (the migrations are tested from
    nothing every time), dropped at the end, whatever the tests left in it."""
    base = make_url(os.environ.get("ORDERS_TEST_DATABASE_URL", DEFAULT_TEST_DATABASE))
    name = f"{base.database}_{RUN_ID}"
    admin = _admin(base.render_as_string(hide_password=False))
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as error:
        admin.dispose()
        unavailable("PostgreSQL", error)
    yield base.set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        # What the benchmark makes beside it, if a run was cut short.
        for (leftover,) in conn.execute(
            text("SELECT datname FROM pg_database WHERE datname LIKE :prefix"),
            {"prefix": f"{name}\\_%"},
        ):
            conn.execute(text(f'DROP DATABASE IF EXISTS "{leftover}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def postgres_engine(postgres_url: str) -> Iterator[Engine]:
    engine = build_engine(postgres_url, pool_size=20, max_overflow=20)
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
