"""Private Redis and PostgreSQL servers for tests that stop, kill or freeze one.

The machine's shared servers (Redis on 6379, PostgreSQL on 5432) are never touched
by such a test: each gets a server of its own, on a free port, with its own data
directory under the test's temporary folder, and stops it at the end.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import redis


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _wait(probe: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout} s")
        time.sleep(0.05)


class RedisServer:
    """``redis-server`` on a port of its own; ``appendonly`` keeps what it had across a
    restart (fsync every write), as the compose file's Redis does.

    ``host`` is the address it listens on, and ``launcher`` what its command line runs
    under: ``("ip", "netns", "exec", "<namespace>")`` starts it on another network
    namespace's address (tests/scale), with ``port`` chosen there by the caller."""

    def __init__(
        self,
        directory: Path,
        *,
        appendonly: bool = False,
        host: str = "127.0.0.1",
        port: int | None = None,
        launcher: Sequence[str] = (),
    ) -> None:
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.appendonly = appendonly
        self.host = host
        self.port = free_port() if port is None else port
        self.launcher = tuple(launcher)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def start(self) -> RedisServer:
        argv = [
            *self.launcher,
            "redis-server",
            "--port",
            str(self.port),
            "--bind",
            self.host,
            "--dir",
            str(self.directory),
            "--save",
            "",
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--appendfsync",
            "always",
            "--logfile",
            str(self.directory / "redis.log"),
        ]
        if self.host != "127.0.0.1":
            # Redis answers only loopback clients when it has no password: the hosts of
            # a namespace harness reach it on the address it was given.
            argv += ["--protected-mode", "no"]
        self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        _wait(self.answers, f"Redis on port {self.port} starting")
        return self

    def answers(self) -> bool:
        try:
            return bool(redis.Redis(self.host, self.port, socket_timeout=0.5).ping())
        except redis.RedisError:
            return False

    def client(self) -> redis.Redis:
        return redis.Redis(self.host, self.port, socket_timeout=5)

    def kill(self) -> None:
        """SIGKILL: what it has not written to its append-only file is gone."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def restart(self) -> None:
        self.kill()
        self.start()

    def freeze(self) -> None:
        """SIGSTOP: it keeps its port and connections, and answers nothing."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGCONT)
        self.kill()


def _postgres_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if found:
        return found[-1]
    path = shutil.which(name)
    if path is None:
        raise AssertionError(f"PostgreSQL's {name} is not installed")
    return path


class PostgresServer:
    """A PostgreSQL cluster of its own (``initdb`` in a temporary folder, trust auth),
    run as the ``postgres`` user when the tests run as root, as PostgreSQL requires.

    ``host``, ``port`` and ``launcher`` as for ``RedisServer``; ``max_connections`` for
    harnesses with more worker processes than the default allows."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        launcher: Sequence[str] = (),
        max_connections: int = 100,
    ) -> None:
        # Its own folder right under the system's temporary one: the ``postgres`` user
        # cannot enter a test's temporary folder, which belongs to root alone.
        self.directory = Path(tempfile.mkdtemp(prefix="orders-test-postgres-"))
        self.data = self.directory / "data"
        self.host = host
        self.port = free_port() if port is None else port
        self.launcher = tuple(launcher)
        self.max_connections = max_connections
        self._as_root = os.geteuid() == 0

    @property
    def url(self) -> str:
        return f"postgresql+psycopg2://postgres@{self.host}:{self.port}/postgres"

    def _run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = ["runuser", "-u", "postgres", "--", *argv] if self._as_root else list(argv)
        return subprocess.run(
            [*self.launcher, *command], capture_output=True, text=True, check=check, timeout=120
        )

    def create(self) -> PostgresServer:
        if self._as_root:
            shutil.chown(self.directory, "postgres", "postgres")
        self._run(
            _postgres_bin("initdb"),
            "-D",
            str(self.data),
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
        )
        if self.host != "127.0.0.1":
            # initdb trusts loopback clients only; a harness's hosts are on its subnet.
            with open(self.data / "pg_hba.conf", "a") as hba:
                hba.write("host all all samenet trust\n")
        return self.start()

    def start(self) -> PostgresServer:
        options = (
            f"-p {self.port} -k {self.directory} -c listen_addresses={self.host} "
            f"-c fsync=off -c max_connections={self.max_connections}"
        )
        self._run(
            _postgres_bin("pg_ctl"),
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.directory / "postgres.log"),
            "-w",
            "start",
        )
        return self

    def stop(self, mode: str = "fast") -> None:
        """``immediate``: every backend is killed, as in a crash; ``fast``: clean."""
        self._run(
            _postgres_bin("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop", check=False
        )

    def remove(self) -> None:
        """Stop it and delete its folder."""
        self.stop("immediate")
        shutil.rmtree(self.directory, ignore_errors=True)

    def create_database(self, name: str) -> str:
        self._run(
            _postgres_bin("psql"),
            "-h",
            self.host,
            "-p",
            str(self.port),
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-c",
            f'CREATE DATABASE "{name}"',
        )
        return f"postgresql+psycopg2://postgres@{self.host}:{self.port}/{name}"

    def replicate(self, primary: PostgresServer) -> PostgresServer:
        """Make this (not yet created) server a streaming replica of ``primary`` and start
        it: ``pg_basebackup -R`` copies the primary and writes the standby's settings, so
        it replays what the primary commits and answers reads only. ``initdb``'s default
        ``pg_hba.conf`` lets local replication connections in, as ``wal_level`` (replica)
        and ``max_wal_senders`` allow by default."""
        if self._as_root:
            shutil.chown(self.directory, "postgres", "postgres")
        self._run(
            _postgres_bin("pg_basebackup"),
            *("-h", primary.host, "-p", str(primary.port), "-U", "postgres"),
            *("-D", str(self.data), "-R", "-X", "stream", "--checkpoint=fast", "--no-sync"),
        )
        return self.start()
