"""Real ``celery worker`` processes for end-to-end tests: started, awaited, killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path

from tests.support.lifetime import die_with_parent

ROOT = Path(__file__).resolve().parents[2]


class WorkerProcess:
    """One ``celery -A workers.app worker`` in its own process group, log kept in memory."""

    def __init__(
        self,
        env: Mapping[str, str],
        *,
        queues: str = "orders.commands,orders.projections",
        concurrency: int = 2,
        pool: str = "prefork",
        name: str = "e2e",
        beat: bool = False,
        via: str = "celery",
        loglevel: str = "INFO",
        extra_args: tuple[str, ...] = (),
    ) -> None:
        """``via``: "celery" starts ``celery -A workers.app worker``, "orders" the
        project's console script ``orders worker``; the same worker either way."""
        hostname = f"--hostname={name}-{os.getpid()}-{time.monotonic_ns()}@%h"
        common = [f"--queues={queues}", f"--concurrency={concurrency}", f"--pool={pool}", hostname]
        if via == "orders":
            argv = [sys.executable, "-m", "cli", "worker", *common]
        else:
            argv = [
                *(sys.executable, "-m", "celery", "-A", "workers.app", "worker"),
                *common,
                f"--loglevel={loglevel}",
                "--without-gossip",
                "--without-mingle",
            ]
        if beat:
            argv.append("--beat")
        argv.extend(extra_args)  # e.g. --batch=20
        self.lines: list[str] = []
        self._ready = threading.Event()
        self.process = subprocess.Popen(
            argv,
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its own process group, so kill -9 reaches the children
            preexec_fn=die_with_parent,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip())
            if " ready." in line:
                self._ready.set()

    def wait_ready(self, timeout: float = 30.0) -> WorkerProcess:
        if not self._ready.wait(timeout):
            self.stop()
            raise AssertionError("worker did not start:\n" + self.log())
        return self

    def log(self, lines: int | None = 200) -> str:
        """The last ``lines`` lines it printed (None: all of them)."""
        return "\n".join(self.lines if lines is None else self.lines[-lines:])

    def kill(self) -> None:
        """kill -9 the worker and its pool children: nothing gets to acknowledge."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self, timeout: float = 20.0) -> None:
        if self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
