"""``from commands import CommandClient`` works, and importing the commands (as the
domain does) still does not import Celery."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )


def test_the_client_is_exported_by_the_package() -> None:
    done = run(
        "from commands import BrokerUnavailable, CommandClient, OutcomeTimeout, Receipt\n"
        "from commands.client import CommandClient as Direct\n"
        "assert CommandClient is Direct\n"
    )
    assert done.returncode == 0, done.stderr


def test_the_commands_and_the_domain_import_without_celery() -> None:
    done = run(
        "import sys\n"
        "import commands, domain, domain.handler\n"
        "from commands import CreateOrder, Outcome\n"
        "assert 'celery' not in sys.modules and 'kombu' not in sys.modules, sorted(sys.modules)\n"
    )
    assert done.returncode == 0, done.stderr


def test_an_unknown_name_is_still_an_attribute_error() -> None:
    done = run("import commands\ncommands.NoSuchThing\n")
    assert done.returncode == 1
    assert "module 'commands' has no attribute 'NoSuchThing'" in done.stderr
