"""PgBouncer in transaction mode in front of a PostgreSQL server, for the tests that
prove the system runs behind it (``make test-pgbouncer``, ``tests/e2e``).

Its own configuration in a folder of its own, its own port; every database name goes
through to the server (``* = host=... port=...``), so a run's own database needs no
entry. Debian's ``pgbouncer`` package provides the binary (``.ci/run`` installs it).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg2
from sqlalchemy.engine import make_url

from tests.support.servers import free_port
from tests.support.services import unavailable

BINARY = "/usr/sbin/pgbouncer"

USERS = ("postgres", "orders_owner", "orders_writer", "orders_reader")
"""Who may log in through it: ``auth_type = trust`` still wants each name listed."""


def require_installed() -> None:
    """Skip loudly without ``pgbouncer`` (fail under ORDERS_REQUIRE_SERVICES=1)."""
    if not (Path(BINARY).exists() or shutil.which("pgbouncer")):
        unavailable("PgBouncer", FileNotFoundError("no pgbouncer: apt-get install pgbouncer"))


def pgbouncer_wanted() -> bool:
    """ORDERS_TEST_PGBOUNCER=1: the system's processes reach PostgreSQL through PgBouncer
    in transaction mode (``system_database_env`` in ``tests.support.fixtures``)."""
    return os.environ.get("ORDERS_TEST_PGBOUNCER", "") not in ("", "0", "false")


class PgBouncer:
    """``pgbouncer`` with ``pool_mode = transaction``: a server connection is a client's
    only for the length of one transaction, as in a deployment that pools hundreds of
    worker processes onto a few dozen server connections."""

    def __init__(
        self, server_host: str = "127.0.0.1", server_port: int = 5432, pool_size: int = 10
    ) -> None:
        require_installed()
        # Right under the system's temporary folder: it runs as ``postgres`` (PgBouncer
        # refuses root), which cannot enter a test's folder.
        self.directory = Path(tempfile.mkdtemp(prefix="orders-test-pgbouncer-"))
        self.port = free_port()
        self.server = (server_host, server_port)
        self.pool_size = pool_size
        self.process: subprocess.Popen[bytes] | None = None

    def url_for(self, direct_url: str) -> str:
        """``direct_url`` (a database on the server) as reached through this pooler."""
        url = make_url(direct_url).set(host="127.0.0.1", port=self.port)
        return url.render_as_string(hide_password=False)

    def start(self) -> PgBouncer:
        config = self.directory / "pgbouncer.ini"
        (self.directory / "users.txt").write_text("".join(f'"{user}" ""\n' for user in USERS))
        host, port = self.server
        config.write_text(
            f"""[databases]
* = host={host} port={port}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {self.port}
unix_socket_dir =
auth_type = trust
auth_file = {self.directory / "users.txt"}
admin_users = postgres
pool_mode = transaction
default_pool_size = {self.pool_size}
max_client_conn = 2000
server_lifetime = 3600
logfile = {self.directory / "pgbouncer.log"}
pidfile = {self.directory / "pgbouncer.pid"}
"""
        )
        argv = [BINARY if Path(BINARY).exists() else "pgbouncer", str(config)]
        if os.geteuid() == 0:
            shutil.chown(self.directory, "postgres", "postgres")
            for path in self.directory.iterdir():
                shutil.chown(path, "postgres", "postgres")
            argv = ["runuser", "-u", "postgres", "--", *argv]
        self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while not self._answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                log = self.log()
                self.stop()
                raise AssertionError(f"pgbouncer did not start:\n{log}")
            time.sleep(0.05)
        return self

    def _answers(self) -> bool:
        try:
            self.admin("SHOW VERSION")
        except psycopg2.Error:
            return False
        return True

    def admin(self, command: str) -> list[dict[str, object]]:
        """A command of PgBouncer's admin console (``SHOW POOLS``, ``SHOW STATS``, ...)."""
        connection = psycopg2.connect(
            host="127.0.0.1", port=self.port, user="postgres", dbname="pgbouncer"
        )
        connection.autocommit = True  # the console knows no transactions
        try:
            with connection.cursor() as cursor:
                cursor.execute(command)
                names = [column.name for column in cursor.description or ()]
                return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
        finally:
            connection.close()

    def transactions(self, database: str) -> int:
        """Transactions it has pooled for ``database`` so far."""
        rows = self.admin("SHOW STATS")
        return sum(int(str(row["total_xact_count"])) for row in rows if row["database"] == database)

    def log(self) -> str:
        path = self.directory / "pgbouncer.log"
        return path.read_text()[-5000:] if path.exists() else "(no log)"

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            # runuser passes SIGTERM on to PgBouncer, which closes its connections.
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None
        shutil.rmtree(self.directory, ignore_errors=True)
