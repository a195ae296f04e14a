"""``orders demo`` against the real services: Redis, PostgreSQL, a separate worker."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Engine, func, select

from store.schema import command_log, events
from tests.support.cli import orders
from tests.support.walkthrough import WALKTHROUGH_TAIL
from tests.support.workers import WorkerProcess


def test_the_demo_runs_through_redis_and_a_worker_process(
    start_worker: Callable[..., WorkerProcess], worker_env: dict[str, str], pg: Engine
) -> None:
    worker = start_worker()

    first = orders("demo", env=worker_env)
    second = orders("demo", env=worker_env)

    assert first.returncode == 0, first.stderr
    assert first.stdout.endswith(WALKTHROUGH_TAIL)
    assert second.stdout == first.stdout
    with pg.connect() as conn:
        assert conn.execute(select(func.count()).select_from(events)).scalar_one() == 4
        assert conn.execute(select(func.count()).select_from(command_log)).scalar_one() == 4
    # The commands really went through the worker process.
    assert "orders.handle_command" in worker.log()


def test_the_demo_says_so_when_no_worker_runs(worker_env: dict[str, str]) -> None:
    result = orders("demo", "--timeout", "2", env=worker_env)

    assert result.returncode == 1
    assert "is an `orders worker` running?" in result.stderr
