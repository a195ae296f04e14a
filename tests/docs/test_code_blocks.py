"""Every code block in the README and in docs/ is run or checked against the code, so a
snippet cannot drift from what the system does.

How a block is tried depends on its language, or on a marker comment right above it
(``<!-- doc-test: ... -->``) when it is not code to run:

- ``python``: run, with the test's Redis and database, against a real worker. A block
  that imports nothing of this project runs in a Python that has Celery alone
  (``make interop``), as the producer it shows would.
- ``js``: run with Node.js and celery-node (``make interop``), against a real worker.
- ``json``: parsed; an envelope is held against the command schema and the worker's
  validation, an outcome against the outcome schema.
- ``bash``: each command line is checked: an ``orders`` line names a real subcommand and
  only options it has; ``make`` a real target; ``export`` a real setting.
- ``output of CMD``: CMD is run; every line of the block (but ``...``) is in its output.
- ``recorded output of orders bench``: every row is one the benchmark prints today.
- ``excerpt of PATH``: every line of the block is a line of that file.
- ``diagram``: a drawing; nothing to run.

``redis://localhost:6379/0`` in a block stands for the test's own Redis, and
``http://localhost:8000`` for an ``orders serve`` the test starts.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import pytest
from jsonschema import Draft202012Validator

from benchmarks.run import ROWS, bench
from bootstrap import Settings
from cli.main import cli
from commands.envelope import decode
from commands.schema import load
from tests.support.api_server import ApiServer
from tests.support.services import unavailable
from tests.support.workers import ROOT, WorkerProcess

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PLACEHOLDER_REDIS = "redis://localhost:6379/0"
PLACEHOLDER_API = "http://localhost:8000"
INTEROP = ROOT / "tests" / "interop"
PROJECT_PACKAGES = ("commands", "domain", "store", "readmodels", "bootstrap", "workers", "cli")


@dataclass(frozen=True)
class Block:
    path: Path
    line: int
    language: str
    marker: str | None
    text: str

    @property
    def name(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def blocks() -> Iterator[Block]:
    fence = re.compile(r"^```(\S*)\s*$")
    for path in DOCS:
        lines = path.read_text().splitlines()
        index = 0
        while index < len(lines):
            opened = fence.match(lines[index])
            if not opened:
                index += 1
                continue
            end = next(i for i in range(index + 1, len(lines)) if lines[i].startswith("```"))
            before = next((lines[i] for i in range(index - 1, -1, -1) if lines[i].strip()), "")
            marker = re.fullmatch(r"<!-- doc-test: (.+) -->", before.strip())
            yield Block(
                path,
                index + 1,
                opened.group(1),
                marker.group(1) if marker else None,
                "\n".join(lines[index + 1 : end]),
            )
            index = end + 1


ALL = list(blocks())


def kind(block: Block) -> str:
    return block.marker.split(" of ")[0] if block.marker else block.language


# -- blocks that run against a worker ------------------------------------------------


def run_python(block: Block, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    imports_project = re.search(
        rf"^\s*(from|import) ({'|'.join(PROJECT_PACKAGES)})\b", block.text, re.M
    )
    python = sys.executable
    if not imports_project:
        python = str(INTEROP / ".venv-bare" / "bin" / "python")
        if not Path(python).exists():
            unavailable("a Python with Celery alone", RuntimeError("run `make interop`"))
    return subprocess.run(
        [python, "-c", block.text], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def run_js(block: Block, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    modules = INTEROP / "node" / "node_modules"
    if not (modules / "celery-node").is_dir():
        unavailable("Node.js with celery-node", RuntimeError("run `make interop`"))
    return subprocess.run(
        ["node", "-e", block.text],
        env={**env, "NODE_PATH": str(modules)},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


RUNNERS: dict[str, Callable[[Block, dict[str, str]], subprocess.CompletedProcess[str]]] = {
    "python": run_python,
    "js": run_js,
}


@pytest.mark.parametrize(
    "block", [b for b in ALL if kind(b) in RUNNERS], ids=lambda block: block.name
)
def test_a_snippet_runs_against_a_real_worker(
    block: Block,
    start_worker: Callable[..., WorkerProcess],
    redis_url: str,
    postgres_url: str,
) -> None:
    start_worker()
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "ORDERS_BROKER_URL": redis_url,
        "ORDERS_RESULT_BACKEND": redis_url,
        "ORDERS_DATABASE_URL": postgres_url,
    }
    text = block.text.replace(PLACEHOLDER_REDIS, redis_url)
    api = None
    if PLACEHOLDER_API in text:
        api = ApiServer(env).wait_ready()
        text = text.replace(PLACEHOLDER_API, api.url)
    runnable = Block(block.path, block.line, block.language, block.marker, text)

    try:
        done = RUNNERS[kind(block)](runnable, env)
    finally:
        if api is not None:
            api.stop()

    assert done.returncode == 0, f"{block.name}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"


# -- blocks checked without a worker --------------------------------------------------


def check_json(block: Block) -> None:
    value = json.loads(block.text)
    if "schema" in value:  # an envelope
        assert Draft202012Validator(load("command")).is_valid(value), block.name
        decode(value)
    elif "status" in value:  # an outcome
        assert Draft202012Validator(load("outcome")).is_valid(value), block.name
    else:
        raise AssertionError(f"{block.name}: neither an envelope nor an outcome")


def check_shell(block: Block) -> None:
    for raw in block.text.splitlines():
        line = re.sub(r"\s+#.*$", "", raw).strip()
        if not line or line.startswith("#"):
            continue
        words = line.split()
        if words[0] == "orders":
            check_orders_line(words[1:], block)
        elif words[0] == "make":
            targets = re.findall(r"^([a-z][\w-]*):", (ROOT / "Makefile").read_text(), re.M)
            assert words[1] in targets, f"{block.name}: no make target {words[1]}"
        elif words[0] == "export":
            variable = words[1].split("=")[0]
            known = {spec.metadata["env"] for spec in Settings.__dataclass_fields__.values()}
            assert variable in known, f"{block.name}: {variable} is not a setting"
        elif words[:3] == ["celery", "-A", "workers.app"]:
            done = subprocess.run(
                [sys.executable, "-m", "celery", "-A", "workers.app", words[3], "--help"],
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert done.returncode == 0, f"{block.name}: {line}"
        else:
            raise AssertionError(f"{block.name}: no check for the command {line!r}")


def check_orders_line(words: list[str], block: Block) -> None:
    """The subcommand exists, and every option written on the line is one of its own."""
    command: click.Command = cli
    path = []
    for word in words:
        if isinstance(command, click.Group) and word in command.commands:
            command = command.commands[word]
            path.append(word)
        else:
            break
    assert path, f"{block.name}: `orders {' '.join(words)}` names no subcommand"
    if path == ["bench"]:  # it hands its arguments to the benchmark's own command line
        command = bench
    known = {name for param in command.params for name in (*param.opts, *param.secondary_opts)}
    for option in re.findall(r"(?<![\w-])(--[a-z][\w-]*)", " ".join(words)):
        assert option in known, f"{block.name}: `orders {' '.join(path)}` has no {option}"


def check_output(block: Block) -> None:
    command = block.marker.split(" of ", 1)[1] if block.marker else ""
    argv = shlex.split(command)
    assert argv[0] == "orders", f"{block.name}: only orders' own output is checked"
    with tempfile.TemporaryDirectory() as scratch:  # the embedded mode's ./orders.db
        done = subprocess.run(
            [sys.executable, "-m", "cli", *argv[1:]],
            cwd=scratch,
            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 0, done.stderr[-2000:]
    for line in block.text.splitlines():
        if line.strip() and line.strip() != "...":
            assert line in done.stdout, f"{block.name}: {line!r} is not in the output"


def check_recorded_bench(block: Block) -> None:
    labels = {label for _, label, _, _ in ROWS} | {"  the same, beside the raw psycopg2 task"}
    headers = ("machine:", "figure", "worker processes")
    for line in block.text.splitlines():
        if not line.strip() or line.startswith(headers) or re.match(r"^\d+\s", line):
            continue
        label = re.split(r"\s{2,}[-\d]", line, maxsplit=1)[0]
        assert label in labels, f"{block.name}: the bench prints no row {label!r}"


def check_excerpt(block: Block) -> None:
    source = block.marker.split(" of ", 1)[1] if block.marker else ""
    text = {line.strip() for line in (ROOT / source).read_text().splitlines()}
    for line in block.text.splitlines():
        if line.strip():
            assert line.strip() in text, f"{block.name}: {line.strip()!r} is not in {source}"


CHECKS: dict[str, Callable[[Block], Any]] = {
    "json": check_json,
    "bash": check_shell,
    "output": check_output,
    "recorded output": check_recorded_bench,
    "excerpt": check_excerpt,
    "diagram": lambda block: None,
}


@pytest.mark.parametrize(
    "block", [b for b in ALL if kind(b) not in RUNNERS], ids=lambda block: block.name
)
def test_a_block_says_what_the_code_does(block: Block) -> None:
    check = CHECKS.get(kind(block))
    assert check is not None, (
        f"{block.name}: a ```{block.language} block this test cannot try; run it, or mark it "
        "with a <!-- doc-test: ... --> comment this test knows"
    )
    check(block)


def test_there_are_blocks_of_every_kind() -> None:
    kinds = {kind(block) for block in ALL}
    assert {"python", "js", "json", "bash", "output", "excerpt"} <= kinds, kinds
