"""Helpers shared by the load and crash tests: sending raw envelopes, collecting
outcomes, reading back what the workers wrote, and the invariants every run must keep."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import redis
from sqlalchemy import Engine, select

from commands import Outcome
from commands.client import CommandClient
from commands.transport import COMMANDS_QUEUE, HANDLE_COMMAND
from domain.events import Event
from domain.handler import load_order
from domain.order import Order, fold
from store import open_event_store
from store.codec import EVENT_COLUMNS, decode, stored_from_row
from store.schema import command_log, events

TERMINAL = ("accepted", "rejected", "failed")


def send_raw(client: CommandClient, envelope: Any, task_id: str) -> str:
    """Publish ``envelope`` as it is, bypassing the producer's validation."""
    client._app.send_task(HANDLE_COMMAND, args=[envelope], task_id=task_id, queue=COMMANDS_QUEUE)
    return task_id


def wait_all(client: CommandClient, task_ids: Iterable[str], timeout: float) -> dict[str, Outcome]:
    """Every task's outcome, within one overall deadline (not ``timeout`` per task)."""
    deadline = time.monotonic() + timeout
    outcomes: dict[str, Outcome] = {}
    for task_id in task_ids:
        outcomes[task_id] = client.wait(task_id, timeout=max(0.1, deadline - time.monotonic()))
    return outcomes


@dataclass(frozen=True)
class Stored:
    """What the workers left in PostgreSQL."""

    events: list[Event]
    log: dict[str, dict[str, Any]]  # command_id -> command_log row
    log_rows: int

    def by_order(self) -> dict[str, list[Event]]:
        streams: dict[str, list[Event]] = defaultdict(list)
        for event in self.events:  # already ordered by (aggregate_id, version)
            streams[event.aggregate_id].append(event)
        return dict(streams)

    def events_per_command(self) -> Counter[str | None]:
        return Counter(event.metadata.command_id for event in self.events)


def read_store(pg: Engine) -> Stored:
    query = select(*(events.c[name] for name in EVENT_COLUMNS)).order_by(
        events.c.aggregate_id, events.c.version
    )
    with pg.connect() as conn:
        rows = conn.execute(query).mappings().all()
        log_rows = conn.execute(select(command_log)).mappings().all()
    log = {row["command_id"]: dict(row) for row in log_rows}
    decoded = [
        event for row in rows for event in decode(row["aggregate_id"], [stored_from_row(row)])
    ]
    return Stored(decoded, log, len(log_rows))


def assert_contiguous_versions(stored: Stored) -> None:
    for order_id, stream in stored.by_order().items():
        versions = [event.version for event in stream]
        assert versions == list(range(1, len(stream) + 1)), f"{order_id}: versions {versions}"


def assert_state_is_the_fold(pg: Engine, stored: Stored) -> dict[str, Order]:
    """For each order: the handler's view (snapshot + events) equals the plain fold."""
    store = open_event_store(pg)
    folded = {}
    for order_id, stream in stored.by_order().items():
        replayed = fold(Order(order_id), stream)
        assert load_order(store, order_id) == replayed, order_id
        folded[order_id] = replayed
    return folded


def assert_each_accepted_command_appended_once(
    stored: Stored, outcomes: Mapping[str, Outcome]
) -> None:
    """Accepted outcomes and events match one to one, through metadata.command_id,
    and each event sits at the version its outcome reported."""
    per_command = stored.events_per_command()
    twice = {command_id: n for command_id, n in per_command.items() if n != 1}
    assert not twice, f"commands with more than one event: {twice}"
    accepted = {task_id for task_id, outcome in outcomes.items() if outcome.accepted}
    with_events = {str(command_id) for command_id in per_command}
    assert None not in per_command, "an event without a command id"
    assert with_events == accepted, (
        f"events without an accepted outcome: {sorted(with_events - accepted)[:5]}; "
        f"accepted outcomes without an event: {sorted(accepted - with_events)[:5]}"
    )
    assert len(stored.events) == len(accepted)
    for event in stored.events:
        outcome = outcomes[event.metadata.command_id or ""]
        assert (outcome.order_id, outcome.version, outcome.events) == (
            event.aggregate_id,
            event.version,
            (event.event_type,),
        ), (outcome, event)


def assert_one_log_row_per_command(
    stored: Stored, outcomes: Mapping[str, Outcome], task_ids: Iterable[str]
) -> None:
    """Exactly one command_log row per command, holding the outcome the producer got."""
    expected = set(task_ids)
    assert stored.log_rows == len(stored.log)  # command_id is the primary key
    assert set(stored.log) == expected, (
        f"missing rows: {sorted(expected - set(stored.log))[:5]}; "
        f"unexpected rows: {sorted(set(stored.log) - expected)[:5]}"
    )
    for command_id in expected:
        row = stored.log[command_id]
        assert Outcome.from_dict(row["outcome"]) == outcomes[command_id], command_id
        assert row["status"] == outcomes[command_id].status


# -- the broker's view -------------------------------------------------------------------


def unacked_tasks(broker: redis.Redis) -> dict[str, str]:
    """task id -> task name of every message kombu's Redis transport holds as unacked."""
    held = {}
    for raw in broker.hvals("unacked"):
        message, _exchange, _routing_key = json.loads(raw)
        headers = message.get("headers") or {}
        held[str(headers.get("id"))] = str(headers.get("task"))
    return held


def unacked_delivery_times(broker: redis.Redis) -> list[float]:
    """When each unacked message was delivered (the scores of kombu's index)."""
    return [float(entry[1]) for entry in broker.zrange("unacked_index", 0, -1, withscores=True)]


# -- worker logs -------------------------------------------------------------------------

_TASK_LINE = re.compile(
    r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}): .*"
    r"Task orders\.handle_command\[([0-9a-f-]{36})\] (received|succeeded)"
)


def task_log(lines: Iterable[str]) -> dict[str, set[str]]:
    """``received`` and ``succeeded`` task ids in a worker's log."""
    seen: dict[str, set[str]] = {"received": set(), "succeeded": set()}
    for line in list(lines):
        match = _TASK_LINE.search(line)
        if match:
            seen[match.group(3)].add(match.group(2))
    return seen


def received_at(lines: Iterable[str]) -> dict[str, float]:
    """task id -> when the worker logged it as received (epoch seconds, local clock)."""
    times: dict[str, float] = {}
    for line in list(lines):
        match = _TASK_LINE.search(line)
        if match and match.group(3) == "received":
            logged = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f")
            times.setdefault(match.group(2), logged.timestamp())
    return times


def new_id() -> str:
    return str(uuid.uuid4())
