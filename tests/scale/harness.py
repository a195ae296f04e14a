"""One scenario's system: a database and a Redis database of its own on the data host,
migrated with ``orders migrate``, the producer's client, and worker hosts to start.

The servers are the harness's (``tests.support.servers``), started once on the data
host; each scenario gets a fresh database and Redis database number in them, so what
one scenario leaves behind (a backlog, late attempts) cannot reach the next.
"""

from __future__ import annotations

import os
import subprocess
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import redis
from sqlalchemy import Engine, text

from commands.client import CommandClient
from store import build_engine
from tests.scale.network import Host, Network
from tests.scale.workers import ORDERS, ROOT, HostWorker
from tests.support.servers import PostgresServer, RedisServer
from tests.support.worker_logs import received_at

WORKER_HOSTS = ("w1", "w2", "w3")
# Short enough to watch redelivery within a test, long enough for a soft limit (the
# time limit minus 10 s) of 4 s: a slow command under a busy machine is not failed.
VISIBILITY_TIMEOUT = 15
LIMITS = {
    "ORDERS_VISIBILITY_TIMEOUT": str(VISIBILITY_TIMEOUT),
    "ORDERS_TASK_TIME_LIMIT": str(VISIBILITY_TIMEOUT - 1),
    "ORDERS_COMMAND_TIME_LIMIT": str(VISIBILITY_TIMEOUT - 1),
}
# kombu looks for expired unacknowledged messages this often (workers/celery_config.py).
RESTORE_INTERVAL = max(1, min(10, VISIBILITY_TIMEOUT // 2))


def clean_environment() -> dict[str, str]:
    """This process's environment without ORDERS_*: nothing started here may reach the
    machine's shared servers through a variable the test run happened to carry."""
    return {key: value for key, value in os.environ.items() if not key.startswith("ORDERS_")}


@dataclass
class DataHost:
    host: Host
    postgres: PostgresServer
    redis: RedisServer
    databases: int = 0

    def new_database(self, name: str) -> tuple[str, str]:
        """(database URL, Redis URL) of a fresh database and Redis database number."""
        self.databases += 1
        redis_url = f"redis://{self.redis.host}:{self.redis.port}/{self.databases}"
        return self.postgres.create_database(name), redis_url


@dataclass
class Scenario:
    name: str
    network: Network
    database_url: str
    redis_url: str
    logs: Path
    engine: Engine = field(init=False)
    client: CommandClient = field(init=False)
    broker: redis.Redis = field(init=False)
    workers: dict[str, HostWorker] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.engine = build_engine(self.database_url, pool_size=2)
        self.client = CommandClient(self.redis_url, self.redis_url)
        self.broker = redis.Redis.from_url(self.redis_url, socket_timeout=10)

    def env(self, database_url: str | None = None, redis_url: str | None = None) -> dict[str, str]:
        redis_url = redis_url or self.redis_url
        return {
            "ORDERS_DATABASE_URL": database_url or self.database_url,
            "ORDERS_BROKER_URL": redis_url,
            "ORDERS_RESULT_BACKEND": redis_url,
            **LIMITS,
        }

    def migrate(self) -> None:
        done = subprocess.run(
            [*self.network["producer"].launcher(), str(ORDERS), "migrate"],
            cwd=ROOT,
            env={**clean_environment(), **self.env()},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, f"orders migrate failed:\n{done.stdout}\n{done.stderr}"

    def start_worker(self, name: str, env: Mapping[str, str] | None = None) -> HostWorker:
        host = self.network[name]
        worker = HostWorker(host, env or self.env(), self.logs / f"{self.name}-{name}.log")
        self.workers[name] = worker
        return worker

    def start_workers(self, names: tuple[str, ...] = WORKER_HOSTS) -> list[HostWorker]:
        started = [self.start_worker(name) for name in names]
        return [worker.wait_ready() for worker in started]

    def decided_by(self) -> dict[str, set[str]]:
        """Command ids each host's log shows it finished (a late attempt counts too)."""
        return {name: worker.tasks()["succeeded"] for name, worker in self.workers.items()}

    def per_host(self) -> dict[str, int]:
        return {name: len(ids) for name, ids in self.decided_by().items()}

    def received_elsewhere(self, ids: set[str], not_on: str) -> dict[str, float]:
        """When a host other than ``not_on`` first logged each of ``ids`` as received
        (epoch seconds): a redelivery, for commands ``not_on`` held."""
        first: dict[str, float] = {}
        for name, worker in self.workers.items():
            if name == not_on:
                continue
            for task_id, at in received_at(worker.lines()).items():
                if task_id in ids:
                    first[task_id] = min(at, first.get(task_id, at))
        return first

    def open_transactions(self, host: Host) -> int:
        """``host``'s database sessions in the middle of something (a statement or a
        transaction): what its freeze or cut leaves holding locks."""
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    text(
                        "SELECT count(*) FROM pg_stat_activity WHERE client_addr = :address "
                        "AND state <> 'idle' AND datname = current_database()"
                    ),
                    {"address": host.address},
                ).scalar_one()
            )

    def decided_twice(self) -> int:
        """Commands more than one host finished: a redelivery, answered from the log."""
        seen = Counter(i for ids in self.decided_by().values() for i in ids)
        return sum(1 for count in seen.values() if count > 1)

    def close(self) -> None:
        for worker in self.workers.values():
            worker.stop()
        self.client.close()
        self.broker.close()
        self.engine.dispose()

    def log_tails(self, lines: int = 30) -> str:
        return "\n".join(
            f"--- {name} ---\n" + "\n".join(worker.lines()[-lines:])
            for name, worker in self.workers.items()
        )
