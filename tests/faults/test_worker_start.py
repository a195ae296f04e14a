"""A worker that cannot serve exits at start, non-zero, saying what to do.

Before: on an unmigrated database every command ended ``failed`` (``relation
"command_log" does not exist``), and on a missing database each took 27 s.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tests.support.cli import orders
from tests.support.workers import WorkerProcess


@pytest.fixture
def unmigrated(postgres_url: str) -> Iterator[str]:
    name = f"orders_unmigrated_{uuid.uuid4().hex[:8]}"
    admin = create_engine(
        make_url(postgres_url).set(database="postgres"), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    admin.dispose()


def exit_of(worker: WorkerProcess, timeout: float = 60) -> int:
    return worker.process.wait(timeout=timeout)


@pytest.mark.parametrize("entry", ["celery", "orders"])
def test_a_worker_on_an_unmigrated_database_exits_saying_run_migrate(
    unmigrated: str, redis_url: str, entry: str
) -> None:
    env = {"ORDERS_DATABASE_URL": unmigrated, "ORDERS_BROKER_URL": redis_url}
    worker = WorkerProcess(env, via=entry)

    assert exit_of(worker) == 78, worker.log()
    log = worker.log()
    assert "this worker cannot serve" in log
    assert "without this system's tables, this code needs" in log
    assert "run `orders migrate`" in log
    assert " ready." not in log  # it never took a message


def test_a_worker_on_a_missing_database_exits_unavailable(
    postgres_url: str, redis_url: str
) -> None:
    missing = make_url(postgres_url).set(database=f"orders_missing_{uuid.uuid4().hex[:8]}")
    env = {
        "ORDERS_DATABASE_URL": missing.render_as_string(hide_password=False),
        "ORDERS_BROKER_URL": redis_url,
    }
    worker = WorkerProcess(env)

    assert exit_of(worker) == 69, worker.log()
    assert "cannot reach the database" in worker.log()
    assert "does not exist" in worker.log()


def test_after_migrate_the_same_worker_starts(unmigrated: str, redis_url: str) -> None:
    env = {"ORDERS_DATABASE_URL": unmigrated, "ORDERS_BROKER_URL": redis_url}
    assert orders("migrate", env=env).returncode == 0

    worker = WorkerProcess(env).wait_ready()
    worker.stop()
