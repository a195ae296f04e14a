"""The shared servers the tests use, and this run's own share of them.

PostgreSQL is the server of ORDERS_TEST_DATABASE_URL (default: the local trust-auth
server), Redis the server of ORDERS_TEST_REDIS_URL (default: the local one). A run takes
a database of its own on each (see ``tests.support.fixtures``), named after ``RUN_ID``,
so two runs on one server, a developer's and CI's, never see each other's data.

When a server cannot be reached the tests that need it skip with a loud reason, unless
ORDERS_REQUIRE_SERVICES=1 (CI sets it): then they fail, so a missing service can never
turn CI green.
"""

from __future__ import annotations

import os
import uuid

import pytest

DEFAULT_TEST_DATABASE = "postgresql+psycopg2://postgres@127.0.0.1:5432/orders_test"
DEFAULT_TEST_REDIS = "redis://127.0.0.1:6379"

RUN_ID = uuid.uuid4().hex[:6]
"""This run's suffix for the databases and the Redis key space it makes."""


def services_required() -> bool:
    return os.environ.get("ORDERS_REQUIRE_SERVICES", "") not in ("", "0", "false")


def unavailable(service: str, error: Exception) -> None:
    message = f"{service} is not reachable ({type(error).__name__}: {error})"
    if services_required():
        pytest.fail(f"{message}; ORDERS_REQUIRE_SERVICES is set, so this is a failure")
    pytest.skip(f"SKIPPED LOUDLY: {message}; set ORDERS_REQUIRE_SERVICES=1 to fail instead")
