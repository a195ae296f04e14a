"""Producers in other languages, written from docs/wire-protocol.md alone, against a
real ``orders`` worker: Node.js with celery-node, and Python with Celery but without
this project. Each sends every command type, an invalid command, a command twice and a
command under a task id of its own; every answer must be the command log's.

Both are installed by ``make interop`` (``make test`` runs it): celery-node from
tests/interop/node/package-lock.json, and a virtualenv with ``celery[redis]`` alone.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine

from commands import CommandClient, Outcome
from store import open_event_store
from tests.support.services import unavailable
from tests.support.workers import WorkerProcess

HERE = Path(__file__).parent
NODE_PRODUCER = HERE / "node" / "producer.js"
BARE_PYTHON = HERE / ".venv-bare" / "bin" / "python"
PYTHON_PRODUCER = HERE / "python" / "producer.py"


def node() -> list[str]:
    executable = shutil.which("node")
    if executable is None or not (HERE / "node" / "node_modules" / "celery-node").is_dir():
        unavailable("Node.js with celery-node", RuntimeError("run `make interop`"))
    return [str(executable), str(NODE_PRODUCER)]


def bare_python() -> list[str]:
    if not BARE_PYTHON.exists():
        unavailable("a Python with Celery alone", RuntimeError("run `make interop`"))
    return [str(BARE_PYTHON), str(PYTHON_PRODUCER)]


def answers(argv: list[str], redis_url: str, order_id: str) -> dict[str, dict[str, Any]]:
    done = subprocess.run(
        [*argv, redis_url, order_id], capture_output=True, text=True, timeout=180, check=False
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    return {line["label"]: line for line in lines}


@pytest.mark.parametrize("producer", [node, bare_python], ids=["node", "python without this"])
def test_a_producer_from_the_wire_contract_alone_gets_every_outcome(
    start_worker: Callable[..., WorkerProcess],
    redis_url: str,
    pg: Engine,
    client: CommandClient,
    producer: Callable[[], list[str]],
) -> None:
    start_worker()
    order_id = f"order-{producer.__name__.replace('_', '-')}"

    got = answers(producer(), redis_url, order_id)

    store = open_event_store(pg)
    for label, answer in got.items():
        outcome = Outcome.from_dict(answer["outcome"])
        # Every answer is the command log's, found by the command id and the task id.
        assert store.find_outcome(answer["command_id"]) == outcome, label
        assert store.find_outcome(answer["task_id"]) == outcome, label
        assert outcome.command_id == answer["command_id"], label
        # And in the result store, where any producer looks, by either id.
        assert client.outcome(answer["command_id"]) == outcome, label
        assert client.outcome(answer["task_id"]) == outcome, label
    statuses = {label: answer["outcome"]["status"] for label, answer in got.items()}
    expected_accepted = [
        label for label in statuses if label.startswith(("create", "add", "remove", "twice", "pay"))
    ]
    assert all(statuses[label] == "accepted" for label in expected_accepted), statuses
    assert got["invalid"]["outcome"]["error"] == "InvalidCommand"
    assert "quantity" in got["invalid"]["outcome"]["message"]
    assert got["twice, again"]["outcome"] == got["twice, first"]["outcome"]
    assert got["cancel after pay"]["outcome"]["error"] == "CannotCancelPaidOrder"
    # The order is what the accepted commands made: created, apple and fig, paid.
    events = [event.event_type for event in store.load(order_id)]
    assert events == [
        "OrderCreated",
        "ItemAdded",
        "ItemAdded",
        "ItemRemoved",
        "ItemAdded",
        "OrderPaid",
    ]
