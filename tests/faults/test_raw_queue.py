"""Anything a program with access to Redis can put on the commands queue.

A queue is a Redis list: ``LPUSH`` puts there whatever it is given, past Celery and
kombu. Each garbage item below goes between valid commands, to one real worker, which
must keep running (same PID), answer every valid command, and dead-letter every item
with its raw bytes and a reason. Nothing may reach the event log but the valid
commands' events, and nothing may stay behind in Redis to be delivered again.
"""

from __future__ import annotations

import base64
import json
import pickle
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import redis
from kombu import Connection, Exchange, Producer
from sqlalchemy import Engine, select

from commands import CreateOrder
from commands.client import CommandClient
from commands.envelope import encode
from commands.transport import COMMANDS_QUEUE, HANDLE_COMMAND
from store.dead_letters import MAX_BODY_CHARS
from store.schema import dead_letters, events
from tests.support.proc import peak_rss_mb, rss_mb
from tests.support.workers import WorkerProcess

WAIT = 30.0


@dataclass(frozen=True)
class Garbage:
    name: str
    push: Callable[[redis.Redis, str], None]
    reason: str  # a part of the dead letter's reason
    body: bytes | None = None  # the raw body the dead letter keeps, when it is predictable


def lpush(item: bytes) -> Callable[[redis.Redis, str], None]:
    def push(broker: redis.Redis, _url: str) -> None:
        broker.lpush(COMMANDS_QUEUE, item)

    return push


def message(**overrides: Any) -> bytes:
    """A kombu message as kombu itself stores it, with ``overrides`` (None deletes)."""
    body = json.dumps([[encode(CreateOrder("order-garbage", "customer-1"))], {}, {}])
    valid: dict[str, Any] = {
        "body": base64.b64encode(body.encode()).decode(),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {"task": HANDLE_COMMAND, "id": str(uuid.uuid4()), "lang": "py"},
        "properties": {
            "delivery_tag": str(uuid.uuid4()),
            "body_encoding": "base64",
            "delivery_info": {"exchange": COMMANDS_QUEUE, "routing_key": COMMANDS_QUEUE},
            "priority": 0,
        },
    }
    for path, value in overrides.items():
        target = valid
        *parents, leaf = path.split("__")
        for parent in parents:
            target = target[parent]
        if value is None:
            target.pop(leaf, None)
        else:
            target[leaf] = value
    return json.dumps(valid).encode()


def published(
    body: bytes, headers: dict[str, Any], content_type: str = "application/json"
) -> Callable[[redis.Redis, str], None]:
    """Through kombu: a well-formed message around a body and headers of our choosing."""

    def push(_broker: redis.Redis, url: str) -> None:
        with Connection(url) as conn:
            Producer(conn).publish(
                body,
                exchange=Exchange(COMMANDS_QUEUE, type="direct"),
                routing_key=COMMANDS_QUEUE,
                content_type=content_type,
                content_encoding="utf-8",
                headers=headers,
                retry=False,
            )

    return push


def task(task_id: Any = "new", **extra: Any) -> dict[str, Any]:
    headers = {"task": HANDLE_COMMAND, "id": str(uuid.uuid4()) if task_id == "new" else task_id}
    headers.update(extra)
    return {key: value for key, value in headers.items() if value is not None}


def args(*arguments: Any) -> bytes:
    return json.dumps([list(arguments), {}, {}]).encode()


VALID_BODY = args(encode(CreateOrder("order-garbage", "customer-1")))
HUGE = b"x" * (3 * 1024 * 1024)

GARBAGE = [
    # Items kombu cannot read as a message at all.
    Garbage("not JSON", lpush(b"not json"), "is not JSON", b"not json"),
    Garbage("truncated JSON", lpush(b'{"body": "abc'), "is not JSON", b'{"body": "abc'),
    Garbage("empty", lpush(b""), "is not JSON", b""),
    Garbage("a JSON string", lpush(b'"hello"'), "is a JSON string", b'"hello"'),
    Garbage("a JSON array", lpush(b"[1,2]"), "is a JSON array", b"[1,2]"),
    Garbage("a JSON number", lpush(b"42"), "is a JSON number", b"42"),
    Garbage("JSON null", lpush(b"null"), "is a JSON null", b"null"),
    Garbage("JSON true", lpush(b"true"), "is a JSON boolean", b"true"),
    Garbage("not UTF-8", lpush(b"\xff\xfe\x00garbage"), "is not UTF-8"),
    Garbage("a pickle", lpush(pickle.dumps({"task": HANDLE_COMMAND})), "is not"),
    Garbage("too big", lpush(HUGE), f"is {len(HUGE)} bytes, above"),
    Garbage("an object", lpush(b'{"hello":"world"}'), "has no 'properties' object"),
    Garbage("properties null", lpush(message(properties=None)), "'properties' object"),
    Garbage("no tag", lpush(message(properties__delivery_tag=None)), "delivery_tag"),
    Garbage("tag a number", lpush(message(properties__delivery_tag=7)), "delivery_tag"),
    Garbage("no delivery_info", lpush(message(properties__delivery_info=None)), "delivery_info"),
    Garbage(
        "no exchange",
        lpush(message(properties__delivery_info__exchange=None)),
        "delivery_info.exchange",
    ),
    Garbage(
        "routing key a number",
        lpush(message(properties__delivery_info__routing_key=5)),
        "delivery_info.routing_key",
    ),
    Garbage("body a number", lpush(message(body=5)), "'body' that is not a string"),
    Garbage("body not base64", lpush(message(body="!!!")), "not base64"),
    Garbage("unknown encoding", lpush(message(properties__body_encoding="rot13")), "rot13"),
    Garbage("headers a string", lpush(message(headers="x")), "'headers' that is not an object"),
    Garbage("content type a number", lpush(message(**{"content-type": 3})), "'content-type'"),
    Garbage("priority a string", lpush(message(properties__priority="high")), "priority"),
    # Messages kombu carries, which are not tasks this worker can run.
    Garbage("no headers", lpush(message(headers=None)), "not a task message"),
    Garbage("body not JSON", published(b"{not json", task()), "undecodable", b"{not json"),
    Garbage("plain text", published(b"hello", task(), "text/plain"), "untrusted", b"hello"),
    Garbage(
        "pickle content",
        published(pickle.dumps(([], {}, {})), task(), "application/x-python-serialize"),
        "untrusted content of type pickle",
    ),
    Garbage("unknown task", published(b"[[], {}, {}]", task(task="orders.ship")), "unknown task"),
    Garbage("task name a number", published(b"[[], {}, {}]", task(task=7)), "unknown task"),
    Garbage("task id a number", published(VALID_BODY, task(12345)), "task id"),
    Garbage("task id null", published(VALID_BODY, task(None, id=None)), "task id"),
    Garbage("task id empty", published(VALID_BODY, task("")), "task id"),
    Garbage("body an object", published(b'{"command": 1}', task()), "malformed task message"),
    Garbage("body two items", published(b'[["args"], {}]', task()), "malformed task message"),
    Garbage("kwargs a list", published(b'[[], ["x"], {}]', task()), ""),
    Garbage("envelope a string", published(args("CreateOrder o-1"), task()), "InvalidCommand"),
    Garbage("envelope null", published(args(None), task()), "InvalidCommand"),
    Garbage("no command id", published(args({"type": "CreateOrder"}), task()), "command_id"),
    Garbage(
        "command id a number",
        published(args({**encode(CreateOrder("o-1", "c-1")), "command_id": 7}), task()),
        "command_id: must be a UUID, got 7",
    ),
]


def dead_letter_rows(pg: Engine) -> list[Any]:
    with pg.connect() as conn:
        return list(conn.execute(select(dead_letters).order_by(dead_letters.c.id)))


def wait_for(probe: Callable[[], Any], what: str, timeout: float = WAIT) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := probe()):
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout} s waiting for {what}")
        time.sleep(0.05)
    return found


def test_no_item_on_the_queue_stops_the_worker_and_every_one_is_dead_lettered(
    start_worker: Callable[..., WorkerProcess],
    client: CommandClient,
    pg: Engine,
    broker: redis.Redis,
    redis_url: str,
) -> None:
    assert len(GARBAGE) >= 30
    worker = start_worker(concurrency=1)
    pid = worker.process.pid
    valid: list[CreateOrder] = []

    for index, garbage in enumerate(GARBAGE):
        garbage.push(broker, redis_url)
        command = CreateOrder(f"order-{index}", "customer-1")
        outcome = client.send(command).wait(timeout=WAIT)
        assert outcome.status == "accepted", (garbage.name, outcome, worker.log()[-3000:])
        valid.append(command)
        # Each item is recorded before the next: then a dead letter names its item.
        rows = wait_for(
            lambda index=index: len(rows := dead_letter_rows(pg)) > index and rows,
            f"the dead letter of {garbage.name!r}",
        )
        assert len(rows) == index + 1, (garbage.name, [row.reason for row in rows])
        letter = rows[index]
        assert garbage.reason in letter.reason, (garbage.name, letter.reason)
        assert letter.source == COMMANDS_QUEUE, garbage.name
        assert len(letter.body) <= MAX_BODY_CHARS, garbage.name
        if garbage.body is not None:
            assert letter.body == garbage.body.decode(), garbage.name

    assert worker.process.poll() is None, "the worker died:\n" + worker.log()[-3000:]
    assert worker.process.pid == pid
    assert "Unrecoverable error" not in worker.log()
    # Only the valid commands reached the log, each once.
    with pg.connect() as conn:
        written = sorted(conn.execute(select(events.c.aggregate_id)).scalars())
    assert written == sorted(command.order_id for command in valid)
    # Nothing left to come back: not queued, not waiting unacknowledged.
    wait_for(
        lambda: broker.llen(COMMANDS_QUEUE) == 0 and broker.hlen("unacked") == 0,
        "an empty queue and no unacknowledged message",
    )


@pytest.mark.parametrize("size_mb", [50])
def test_a_huge_item_is_refused_before_it_is_parsed(
    start_worker: Callable[..., WorkerProcess],
    client: CommandClient,
    pg: Engine,
    broker: redis.Redis,
    size_mb: int,
) -> None:
    worker = start_worker(concurrency=1)
    before = peak_rss_mb(worker.process.pid)
    resident = rss_mb(worker.process.pid)
    item = b'{"body": "' + b"x" * (size_mb * 1024 * 1024) + b'"}'

    broker.lpush(COMMANDS_QUEUE, item)
    outcome = client.send(CreateOrder("order-after-huge", "customer-1")).wait(timeout=WAIT)

    assert outcome.accepted, outcome
    [letter] = wait_for(lambda: dead_letter_rows(pg), "the dead letter")
    assert f"is {len(item)} bytes, above" in letter.reason
    assert len(letter.body) == MAX_BODY_CHARS
    # The item is read off Redis whole (redis-py buffers a reply, then copies it out), but
    # never parsed: parsing it as JSON and decoding its body took 643 MB at its peak for
    # 50 MB, and kept 255 MB.
    grew = peak_rss_mb(worker.process.pid) - before
    assert grew < 4 * size_mb, f"the worker's peak memory grew by {grew} MB"
    kept = rss_mb(worker.process.pid) - resident
    assert kept < size_mb, f"the worker kept {kept} MB"
