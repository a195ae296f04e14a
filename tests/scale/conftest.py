"""The many-hosts harness (issue 17): network namespaces on this machine, as hosts.

Not part of the default run (``pytest``, CI): it needs root, ``ip`` and ``tc``, and
takes about five minutes of load. ``make scale`` runs it (``ORDERS_SCALE=1 pytest -m
scale tests/scale``) and keeps its output in ``tests/scale/LAST_RUN.txt``. Without
ORDERS_SCALE=1 nothing here is even collected, so the default run neither skips nor
reports these tests: they are a separate target, not a part of CI that went missing.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.scale.figures import summary_lines

ENABLED = os.environ.get("ORDERS_SCALE") == "1"
if not ENABLED:
    collect_ignore_glob = ["test_*.py"]


def pytest_terminal_summary(terminalreporter: Any) -> None:
    lines = summary_lines()
    if lines:
        terminalreporter.section("many hosts: figures")
        for line in lines:
            terminalreporter.write_line(line)


if ENABLED:
    from tests.scale.harness import DataHost, Scenario
    from tests.scale.network import Network, inside
    from tests.support.servers import PostgresServer, RedisServer

    HOSTS = ("data", "w1", "w2", "w3", "producer")

    @pytest.fixture(scope="session")
    def network() -> Iterator[Network]:
        if os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("tc") is None:
            pytest.fail("the many-hosts harness needs root, ip and tc")
        # A prefix of this run's own: two runs on one machine never share a namespace.
        built = Network(f"scale{secrets.token_hex(3)}", HOSTS)
        try:
            built.create()
            # This process is the producer host from here on: its client, checks and
            # ``orders migrate`` reach the data host over the bridge, as a producer would.
            with inside(built["producer"]):
                yield built
        finally:
            left = built.remove()
            assert not left, f"namespaces left behind: {left}"

    @pytest.fixture(scope="session")
    def data_host(network: Network, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DataHost]:
        host = network["data"]
        # More connections than the default 100: three workers' pools, projections, checks.
        postgres = PostgresServer(
            host=host.address, port=5432, launcher=host.launcher(), max_connections=300
        )
        redis_server = RedisServer(
            tmp_path_factory.mktemp("redis"),
            host=host.address,
            port=6379,
            launcher=host.launcher(),
        )
        try:
            postgres.create()
            redis_server.start()
            yield DataHost(host, postgres, redis_server)
        finally:
            redis_server.stop()
            postgres.remove()

    @pytest.fixture
    def scenario(
        request: pytest.FixtureRequest, network: Network, data_host: DataHost, tmp_path: Path
    ) -> Iterator[Scenario]:
        name = request.node.name.removeprefix("test_")[:40].replace("[", "_").rstrip("]")
        database_url, redis_url = data_host.new_database(f"scale_{data_host.databases}")
        built = Scenario(name, network, database_url, redis_url, tmp_path)
        try:
            built.migrate()
            yield built
        finally:
            built.close()
