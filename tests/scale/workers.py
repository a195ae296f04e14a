"""``orders worker --concurrency 2`` on a host, its log in a file, and what the log says
it did."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from tests.scale.network import Host
from tests.support.lifetime import die_with_parent
from tests.support.worker_logs import task_log

ROOT = Path(__file__).resolve().parents[2]
ORDERS = Path(sys.executable).with_name("orders")


class HostWorker:
    """One worker process (and its pool) on ``host``."""

    def __init__(self, host: Host, env: Mapping[str, str], log: Path, concurrency: int = 2) -> None:
        self.host = host
        self.log_path = log
        argv = [
            *host.launcher(),
            str(ORDERS),
            "worker",
            f"--concurrency={concurrency}",
            f"--hostname={host.name}@scale",
        ]
        with open(log, "w") as out:
            self.process = subprocess.Popen(
                argv,
                cwd=ROOT,
                env={**os.environ, **env},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own group: SIGTERM/SIGKILL reach the pool
                preexec_fn=die_with_parent,
            )

    def lines(self) -> list[str]:
        return self.log_path.read_text(errors="replace").splitlines()

    def wait_ready(self, timeout: float = 90.0) -> HostWorker:
        deadline = time.monotonic() + timeout
        while not any(" ready." in line for line in self.lines()):
            if self.process.poll() is not None or time.monotonic() > deadline:
                tail = "\n".join(self.lines()[-40:])
                raise AssertionError(f"the worker on {self.host.name} did not start:\n{tail}")
            time.sleep(0.2)
        return self

    def tasks(self) -> dict[str, set[str]]:
        """``received`` and ``succeeded`` command ids, as its log has them."""
        return task_log(self.lines())

    def stop(self, timeout: float = 30.0) -> None:
        if self.process.poll() is not None:
            return
        self.host.thaw()  # a stopped worker cannot act on SIGTERM
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
