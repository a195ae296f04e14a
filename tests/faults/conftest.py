"""Fault-injection fixtures: the end-to-end ones (real Redis, PostgreSQL and workers)."""

from __future__ import annotations

from tests.e2e.conftest import (  # noqa: F401
    broker,
    client,
    redis_url,
    start_worker,
    worker_env,
)
