"""End-to-end fixtures: real Redis, real PostgreSQL, real worker processes."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from sqlalchemy import Engine

from commands.client import CommandClient
from tests.conftest import RUN_ID, unavailable
from tests.support.workers import WorkerProcess

DEFAULT_TEST_REDIS = "redis://127.0.0.1:6379"
CLAIM = "orders:test-run"
CLAIM_SECONDS = 6 * 3600  # a run cut short frees its database after this


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
    pg: Engine, postgres_url: str, broker: redis.Redis, redis_url: str
) -> dict[str, str]:
    """Environment for worker processes: this test's database and Redis, short timeouts."""
    return {
        "ORDERS_DATABASE_URL": postgres_url,
        "ORDERS_BROKER_URL": redis_url,
        "ORDERS_RESULT_BACKEND": redis_url,
        "ORDERS_SNAPSHOT_EVERY": "5",
        "ORDERS_CONFLICT_ATTEMPTS": "30",
    }


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
