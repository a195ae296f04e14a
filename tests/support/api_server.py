"""``orders serve`` in a process of its own, on a free port, for HTTP tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping

import httpx

from tests.support.lifetime import die_with_parent
from tests.support.servers import free_port
from tests.support.workers import ROOT


class ApiServer:
    def __init__(self, env: Mapping[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        base = {key: value for key, value in os.environ.items() if not key.startswith("ORDERS_")}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cli", "serve", "--port", str(self.port)],
            cwd=ROOT,
            env={**base, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )

    def wait_ready(self, timeout: float = 30.0) -> ApiServer:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"orders serve exited:\n{self.output()}")
            try:
                httpx.get(f"{self.url}/openapi.json", timeout=1)
                return self
            except httpx.TransportError:
                time.sleep(0.1)
        self.stop()
        raise AssertionError(f"orders serve did not answer:\n{self.output()}")

    def output(self) -> str:
        if self.process.poll() is None:
            return "(still running)"
        assert self.process.stdout is not None
        return self.process.stdout.read()[-5000:]

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
