"""Run the ``orders`` console script the way a user does: a subprocess with its own env."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from tests.support.lifetime import die_with_parent

ORDERS = [sys.executable, "-m", "cli"]


def orders(
    *args: str, env: Mapping[str, str] | None = None, cwd: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    # Start from the caller's environment minus any ORDERS_* so a developer's shell
    # settings cannot leak into a test; the test states what it needs.
    base = {key: value for key, value in os.environ.items() if not key.startswith("ORDERS_")}
    return subprocess.run(
        [*ORDERS, *args],
        env={**base, **(env or {})},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        preexec_fn=die_with_parent,
    )
