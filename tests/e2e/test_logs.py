"""Structured logs, read as an operator's log shipper reads them: a real worker with
``ORDERS_LOG_FORMAT=json``, every line after start-up one JSON object.

What is held: every line about a command at INFO and above carries its command id, from
Celery's "received" to its "succeeded"; the producer's correlation id reaches the read
models' lines about the command's events; the routine wake-up and sweep lines are DEBUG;
a retry (the database gone) is a WARNING without a traceback.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine

from commands import CreateOrder, PayOrder
from commands.client import CommandClient
from commands.transport import HANDLE_COMMAND, SWEEP_PROJECTIONS, WAKE_PROJECTIONS
from readmodels.projections import PROJECTIONS
from tests.support.servers import PostgresServer
from tests.support.workers import WorkerProcess

JSON_LOGS = {"ORDERS_LOG_FORMAT": "json"}
# Retries that never run out while the test holds the database down.
QUICK_RETRIES = {"ORDERS_DB_RETRY_DELAY": "0.2", "ORDERS_DB_RETRIES": "100"}


def records(worker: WorkerProcess) -> list[dict[str, Any]]:
    """Every line after the worker said it was ready, each parsed: one that is not a
    JSON object fails the test (a log shipper would choke on it)."""
    lines = worker.lines
    start = next(i for i, line in enumerate(lines) if " ready." in line)
    parsed = []
    for line in lines[start:]:
        if not line.strip():
            continue
        record = json.loads(line)
        assert isinstance(record, dict), line
        assert {"time", "level", "logger", "message"} <= record.keys(), record
        parsed.append(record)
    return parsed


def about(command_id: str, found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The lines that name the command, in their message or in their fields."""
    return [r for r in found if command_id in r["message"] or r.get("command_id") == command_id]


def wait_for(worker: WorkerProcess, check: Callable[[list[dict[str, Any]]], bool]) -> None:
    deadline = time.monotonic() + 30
    while not check(records(worker)):
        assert time.monotonic() < deadline, "not logged within 30 s:\n" + worker.log(80)
        time.sleep(0.2)


def test_every_line_of_a_commands_life_carries_its_ids_and_routine_lines_are_debug(
    start_worker: Callable[..., WorkerProcess], client: CommandClient
) -> None:
    worker = start_worker(
        {**JSON_LOGS, "ORDERS_SWEEP_INTERVAL": "1"}, beat=True, loglevel="DEBUG", name="json"
    )
    create = CreateOrder("order-logs", "customer-logs", correlation_id="checkout-42")
    pay = PayOrder("order-nowhere", "card")  # rejected: there is no such order
    assert client.send(create).wait(timeout=30).accepted
    assert client.send(pay).wait(timeout=30).status == "rejected"

    def projected(found: list[dict[str, Any]]) -> bool:
        seen = {r.get("projection") for r in found if r.get("correlation_id") == "checkout-42"}
        sweeps = [r for r in found if SWEEP_PROJECTIONS in r["message"]]
        return seen >= set(PROJECTIONS) and len(sweeps) >= 2

    wait_for(worker, projected)
    found = records(worker)

    for command, status in ((create, "accepted"), (pay, "rejected")):
        # At INFO and above: what a worker at its default level writes. (Celery's own
        # DEBUG lines, such as the pool's "Apply", quote the whole request instead.)
        lines = [r for r in about(command.command_id, found) if r["level"] != "DEBUG"]
        assert all(r.get("command_id") == command.command_id for r in lines), [
            r for r in lines if r.get("command_id") != command.command_id
        ]
        messages = " | ".join(r["message"] for r in lines)
        assert "received" in messages and "succeeded" in messages, messages
        [decided] = [r for r in lines if r.get("status") == status]
        assert decided["level"] == "INFO"
        assert decided["command_type"] == type(command).__name__
        assert decided["order_id"] == command.order_id
        assert isinstance(decided["duration_ms"], int | float)
        if command is create:
            assert decided["correlation_id"] == "checkout-42"

    # The correlation id flows from the producer through the events into the models.
    projection_lines = [r for r in found if r["logger"] == "readmodels.runner"]
    for name in PROJECTIONS:
        [line] = [
            r
            for r in projection_lines
            if r.get("projection") == name and r.get("order_id") == create.order_id
        ]
        assert line["correlation_id"] == "checkout-42", line
        assert line["command_id"] == create.command_id, line

    # Wake-ups and sweeps run all the time: their lines are DEBUG, never INFO.
    routine = [
        r
        for r in found
        if any(name in r["message"] for name in (WAKE_PROJECTIONS, SWEEP_PROJECTIONS))
    ]
    assert routine, "the sweep ran (ORDERS_SWEEP_INTERVAL=1) and its lines are logged at DEBUG"
    assert {r["level"] for r in routine} == {"DEBUG"}, [r for r in routine if r["level"] != "DEBUG"]
    # The command task's own lines stay at INFO.
    assert any(HANDLE_COMMAND in r["message"] and r["level"] == "INFO" for r in found)


def test_a_retry_is_a_warning_without_a_traceback(
    start_worker: Callable[..., WorkerProcess],
    client: CommandClient,
    private_postgres: tuple[PostgresServer, str, Engine],
) -> None:
    server, url, engine = private_postgres
    worker = start_worker({**JSON_LOGS, "ORDERS_DATABASE_URL": url, **QUICK_RETRIES}, name="retry")
    engine.dispose()
    server.stop()  # the database goes away; the worker keeps taking commands
    command = CreateOrder("order-retry", "customer-retry")
    receipt = client.send(command)

    def retried(found: list[dict[str, Any]]) -> bool:
        return sum("retry" in r["message"] for r in about(command.command_id, found)) >= 2

    wait_for(worker, retried)
    server.start()
    assert receipt.wait(timeout=60).accepted

    lines = about(command.command_id, records(worker))
    retries = [r for r in lines if "database unreachable" in r["message"]]
    assert len(retries) >= 2, lines
    assert all(r["level"] == "WARNING" and "exception" not in r for r in retries), retries
    assert all(r.get("retries") for r in retries[1:]), retries  # the attempt is counted
    assert not [r for r in lines if r["level"] in ("ERROR", "CRITICAL")], lines
    assert not [r for r in lines if "exception" in r], lines
