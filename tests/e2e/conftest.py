"""End-to-end fixtures: real Redis, real PostgreSQL, real worker processes."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from sqlalchemy import Engine

from commands.client import CommandClient
from tests.conftest import unavailable
from tests.support.workers import WorkerProcess

DEFAULT_TEST_REDIS = "redis://127.0.0.1:6379/15"


@pytest.fixture(scope="session")
def redis_url() -> str:
    url = os.environ.get("ORDERS_TEST_REDIS_URL", DEFAULT_TEST_REDIS)
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except redis.RedisError as error:
        unavailable("Redis", error)
    return url


@pytest.fixture
def broker(redis_url: str) -> Iterator[redis.Redis]:
    """The test's Redis database, emptied before and after."""
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


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
