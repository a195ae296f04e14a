"""The fixtures every test directory shares, loaded as a pytest plugin by the root
``tests/conftest.py``: real databases for the integration tests, real Redis and worker
processes for the end-to-end and fault tests, per the project's standards.

Each run makes a PostgreSQL database of its own (``orders_test_3f9a1c``: the configured
database's name and ``RUN_ID``) and drops it at the end, and claims a Redis database of
its own; see ``tests.support.services`` for the servers and what happens when one cannot
be reached.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from bootstrap import MIGRATIONS, migrate
from commands.client import CommandClient
from store import build_engine
from tests.support.pgbouncer import PgBouncer, pgbouncer_wanted
from tests.support.servers import PostgresServer
from tests.support.services import DEFAULT_TEST_DATABASE, DEFAULT_TEST_REDIS, RUN_ID, unavailable
from tests.support.workers import WorkerProcess

TABLES = tuple(table for metadata in MIGRATIONS.metadata for table in metadata.tables)
"""What ``pg`` empties before each test."""

CLAIM = "orders:test-run"
CLAIM_SECONDS = 6 * 3600  # a run cut short frees its Redis database after this


# -- PostgreSQL and SQLite ----------------------------------------------------------------


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


@pytest.fixture(scope="session")
def pgbouncer(postgres_url: str) -> Iterator[PgBouncer]:
    """PgBouncer in transaction mode in front of the run's PostgreSQL server."""
    server = make_url(postgres_url)
    bouncer = PgBouncer(server.host or "127.0.0.1", server.port or 5432).start()
    yield bouncer
    served = bouncer.transactions(str(server.database))
    bouncer.stop()
    # A run that meant to go through it and did not would prove nothing about it.
    assert served > 0, "PgBouncer served no transaction of the run's database"


@pytest.fixture(scope="session")
def system_database_env(request: pytest.FixtureRequest, postgres_url: str) -> dict[str, str]:
    """How the system's own processes (workers, the API, ``orders`` commands) reach the
    run's database: directly, or with ORDERS_TEST_PGBOUNCER=1 through PgBouncer in
    transaction mode (``make test-pgbouncer``). The tests' own setup and checks (creating
    the database, migrating it, reading what the workers wrote) always go directly."""
    if not pgbouncer_wanted():
        return {"ORDERS_DATABASE_URL": postgres_url}
    bouncer: PgBouncer = request.getfixturevalue("pgbouncer")
    return {
        "ORDERS_DATABASE_URL": bouncer.url_for(postgres_url),
        "ORDERS_PREPARED_STATEMENTS": "off",
    }


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
    """Each backend in turn, for the tests every SQL store must pass."""
    fixture: Engine = request.getfixturevalue("sqlite" if request.param == "sqlite" else "pg")
    return fixture


# -- Redis, producers and workers ---------------------------------------------------------


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A Redis database (1 to 15) that this run claims for itself: another run on the
    same server, a developer's and CI's, takes another one. Emptied before and after.
    ORDERS_TEST_REDIS_URL names the server (its database number, if any, is ignored)."""
    base = os.environ.get("ORDERS_TEST_REDIS_URL", DEFAULT_TEST_REDIS).rstrip("/")
    server = base.rsplit("/", 1)[0] if base.count("/") > 2 else base
    try:
        redis.Redis.from_url(f"{server}/0", socket_connect_timeout=2).ping()
    except redis.RedisError as error:
        unavailable("Redis", error)
    for number in range(15, 0, -1):
        client = redis.Redis.from_url(f"{server}/{number}")
        if client.set(CLAIM, RUN_ID, nx=True, ex=CLAIM_SECONDS):
            break
        client.close()
    else:
        pytest.fail("every Redis database 1-15 is claimed by another test run")
    client.flushdb()
    client.set(CLAIM, RUN_ID, ex=CLAIM_SECONDS)
    yield f"{server}/{number}"
    client.flushdb()
    client.close()


@pytest.fixture
def broker(redis_url: str) -> Iterator[redis.Redis]:
    """The run's Redis database, emptied before and after (but for the run's claim)."""
    client = redis.Redis.from_url(redis_url)
    _empty(client)
    yield client
    _empty(client)
    client.close()


def _empty(client: redis.Redis) -> None:
    client.flushdb()
    client.set(CLAIM, RUN_ID, ex=CLAIM_SECONDS)


@pytest.fixture
def worker_env(
    pg: Engine, system_database_env: dict[str, str], broker: redis.Redis, redis_url: str
) -> dict[str, str]:
    """Environment for worker processes: this test's database and Redis, short timeouts."""
    return {
        **system_database_env,
        "ORDERS_BROKER_URL": redis_url,
        "ORDERS_RESULT_BACKEND": redis_url,
        "ORDERS_SNAPSHOT_EVERY": "5",
        "ORDERS_CONFLICT_ATTEMPTS": "30",
    }


@pytest.fixture
def private_postgres() -> Iterator[tuple[PostgresServer, str, Engine]]:
    """A PostgreSQL cluster of this test's own, migrated, for tests that stop or crash
    it: (server, URL, engine)."""
    server = PostgresServer().create()
    url = server.create_database("orders")
    engine = build_engine(url)
    migrate(engine)
    yield server, url, engine
    engine.dispose()
    server.remove()


@pytest.fixture
def start_worker(worker_env: dict[str, str]) -> Iterator[Callable[..., WorkerProcess]]:
    started: list[WorkerProcess] = []

    def start(env: dict[str, str] | None = None, **options: Any) -> WorkerProcess:
        worker = WorkerProcess({**worker_env, **(env or {})}, **options)
        started.append(worker)
        return worker.wait_ready()

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture
def client(redis_url: str, broker: redis.Redis) -> Iterator[CommandClient]:
    producer = CommandClient(redis_url, redis_url, publish_timeout=5)
    yield producer
    producer.close()
