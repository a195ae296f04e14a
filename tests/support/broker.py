"""Through the broker: publishing raw envelopes (through Celery) or raw bytes (past it),
waiting for outcomes by task id, and what Redis holds unacknowledged."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable
from typing import Any

import redis
from kombu import Connection, Exchange, Producer

from commands import Outcome
from commands.client import CommandClient
from commands.transport import COMMANDS_QUEUE, HANDLE_COMMAND

TERMINAL = ("accepted", "rejected", "failed")


def send_raw(client: CommandClient, envelope: Any, task_id: str) -> str:
    """Publish ``envelope`` as it is, bypassing the producer's validation."""
    client._app.send_task(HANDLE_COMMAND, args=[envelope], task_id=task_id, queue=COMMANDS_QUEUE)
    return task_id


def publish_raw(
    redis_url: str,
    body: bytes,
    headers: dict[str, Any],
    *,
    content_type: str = "application/json",
) -> None:
    """Put ``body`` on the commands queue as is: no serializer, no Celery in between."""
    with Connection(redis_url) as conn:
        Producer(conn).publish(
            body,
            exchange=Exchange(COMMANDS_QUEUE, type="direct"),
            routing_key=COMMANDS_QUEUE,
            content_type=content_type,
            content_encoding="utf-8",
            headers=headers,
            retry=False,
        )


def task_headers(task_id: str | None = None, task: str = HANDLE_COMMAND) -> dict[str, Any]:
    """Celery protocol 2 headers, as a producer of that task would set them."""
    return {
        "task": task,
        "id": task_id or str(uuid.uuid4()),
        "lang": "py",
        "argsrepr": "",
        "kwargsrepr": "",
    }


def wait_all(client: CommandClient, task_ids: Iterable[str], timeout: float) -> dict[str, Outcome]:
    """Every task's outcome, within one overall deadline (not ``timeout`` per task)."""
    deadline = time.monotonic() + timeout
    outcomes: dict[str, Outcome] = {}
    for task_id in task_ids:
        outcomes[task_id] = client.wait(task_id, timeout=max(0.1, deadline - time.monotonic()))
    return outcomes


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
