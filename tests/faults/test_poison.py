"""Poison messages on ``orders.commands``, published raw, handled by a real worker.

Each must be rejected with a reason, recorded (dead-letter table, or the command log
when the command id is readable), acknowledged exactly once, and must leave the worker
serving valid commands. Nothing may stay in the queue or in Redis's ``unacked`` hash,
where it would be redelivered, and nothing may reach the ``events`` table.
"""

from __future__ import annotations

import json
import pickle
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import redis
from sqlalchemy import Engine, func, select

from commands import CancelOrder, CreateOrder, Outcome
from commands.client import CommandClient
from commands.envelope import MAX_ENVELOPE_BYTES, encode
from commands.transport import COMMANDS_QUEUE, HANDLE_COMMAND, PROJECTIONS_QUEUE
from store.schema import command_log, dead_letters, events
from tests.support.broker import publish_raw, task_headers
from tests.support.workers import WorkerProcess

WAIT = 20.0  # seconds for the worker to get to a message; it usually takes milliseconds

# -- publishing ----------------------------------------------------------------------


def send_task(client: CommandClient, args: list[Any], task_id: str | None = None) -> str:
    """A well-formed Celery task message with whatever arguments the test chooses."""
    task_id = task_id or str(uuid.uuid4())
    client._app.send_task(HANDLE_COMMAND, args=args, task_id=task_id, queue=COMMANDS_QUEUE)
    return task_id


def envelope(**changes: Any) -> dict[str, Any]:
    """A valid CreateOrder envelope with ``changes`` applied; a new ``payload`` replaces
    the old one but for ``order_id``, so the rejection can name the order."""
    valid = encode(CreateOrder("order-poison", "customer-1"))
    if "payload" in changes:
        changes["payload"] = {"order_id": "order-poison", **changes["payload"]}
    return {**valid, **changes}


# -- reading what the worker recorded --------------------------------------------------


@dataclass(frozen=True)
class Letter:
    source: str
    reason: str
    body: str


def letters(pg: Engine) -> list[Letter]:
    query = select(dead_letters).order_by(dead_letters.c.id)
    with pg.connect() as conn:
        return [Letter(row.source, row.reason, row.body) for row in conn.execute(query)]


def logged(pg: Engine, command_id: str) -> Any:
    query = select(command_log).where(command_log.c.command_id == command_id)
    with pg.connect() as conn:
        return conn.execute(query).first()


def rejections(pg: Engine) -> int:
    query = select(func.count()).where(command_log.c.status == "rejected")
    with pg.connect() as conn:
        return int(conn.execute(query).scalar_one())


def eventually(probe: Callable[[], Any], what: str, timeout: float = WAIT) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout} s waiting for {what}")
        time.sleep(0.05)


def dead_lettered(pg: Engine, count: int = 1, timeout: float = WAIT) -> list[Letter]:
    found: list[Letter] = eventually(
        lambda: (rows := letters(pg)) and len(rows) >= count and rows,
        f"{count} dead letter(s)",
        timeout,
    )
    assert len(found) == count, found
    return found


# -- what must hold after any poison message --------------------------------------------


def queues(broker: redis.Redis) -> tuple[int, int, int]:
    return (
        int(broker.llen(COMMANDS_QUEUE)),
        int(broker.llen(PROJECTIONS_QUEUE)),
        int(broker.hlen("unacked")),
    )


def assert_worker_serves_and_nothing_is_stuck(
    worker: WorkerProcess,
    client: CommandClient,
    pg: Engine,
    broker: redis.Redis,
) -> None:
    valid = CreateOrder(f"order-after-{uuid.uuid4().hex[:8]}", "customer-2")
    outcome = client.send(valid).wait(timeout=30)

    assert outcome.status == "accepted", (outcome, worker.log())
    assert outcome.version == 1
    assert worker.process.poll() is None, "the worker died:\n" + worker.log()
    # Acknowledgement (acks_late) follows the result by a moment: poll, then hold.
    try:
        eventually(lambda: queues(broker) == (0, 0, 0), "empty queues")
    except AssertionError:
        stuck = queues(broker)
        raise AssertionError(f"left (commands, projections, unacked): {stuck}") from None
    time.sleep(0.3)
    assert queues(broker) == (0, 0, 0), "something came back for redelivery"
    # The valid command's event is the only one: no poison message reached the log.
    with pg.connect() as conn:
        written = conn.execute(select(events.c.aggregate_id, events.c.event_type)).all()
    assert [tuple(row) for row in written] == [(valid.order_id, "OrderCreated")]


def received(worker: WorkerProcess, task_id: str) -> int:
    """How often the worker took a task off the broker (each delivery logs once)."""
    return sum(f"{HANDLE_COMMAND}[{task_id}] received" in line for line in worker.lines)


# -- messages that are not readable as tasks: the dead-letter table -------------------


def test_a_body_that_is_not_json_is_dead_lettered_with_its_raw_body(
    start_worker: Callable[..., WorkerProcess],
    client: CommandClient,
    pg: Engine,
    broker: redis.Redis,
    redis_url: str,
) -> None:
    worker = start_worker()

    publish_raw(redis_url, b"{not json", task_headers())

    [letter] = dead_lettered(pg)
    assert letter.source == COMMANDS_QUEUE
    assert letter.reason.startswith("undecodable message (application/json): ")
    assert "Expecting property name" in letter.reason  # the decoder's own words
    assert letter.body == "{not json"
    assert_worker_serves_and_nothing_is_stuck(worker, client, pg, broker)


def test_a_json_message_without_task_headers_is_dead_lettered(
    start_worker: Callable[..., WorkerProcess],
    client: CommandClient,
    pg: Engine,
    broker: redis.Redis,
    redis_url: str,
) -> None:
    worker = start_worker()
    body = json.dumps(envelope())

    publish_raw(redis_url, body.encode(), headers={})

    [letter] = dead_lettered(pg)
    assert letter.reason == "not a task message: no task name in its headers"
    assert json.loads(letter.body) == json.loads(body)
    assert rejections(pg) == 0  # it never got as far as the command handler
    assert_worker_serves_and_nothing_is_stuck(worker, client, pg, broker)


def test_a_task_message_for_an_unknown_task_is_dead_lettered_and_the_producer_told(
    start_worker: Callable[..., WorkerProcess],
    client: CommandClient,
    pg: Engine,
    broker: redis.Redis,
    redis_url: str,
) -> None:
    worker = start_worker()
    task_id = str(uuid.uuid4())

    publish_raw(redis_url, b"[[], {}, {}]", task_headers(task_id, task="orders.ship_order"))

    [letter] = dead_lettered(pg)
    assert letter.reason == "unknown task: 'orders.ship_order'"
    assert letter.body == "[[], {}, {}]"
    outcome = client.wait(task_id, timeout=10)
    assert (outcome.status, outcome.error) == ("rejected", "InvalidCommand")
    assert "unknown task: 'orders.ship_order'" in (outcome.message or "")
    assert_worker_serves_and_nothing_is_stuck(worker, client, pg, broker)


# -- task messages whose envelope is invalid but names its command: the command log ------


REJECTED_ENVELOPES = {
    "unknown command type": (
        {"type": "ShipOrder"},
        "type: unknown command type 'ShipOrder'",
    ),
    "missing payload fields": (
        {"type": "AddItem", "payload": {"item_id": "apple"}},
        "payload: AddItem needs ['item_id', 'order_id', 'price', 'quantity']; "
        "missing ['price', 'quantity'], unknown []",
    ),
    "quantity as a string": (
        {"type": "AddItem", "payload": {"item_id": "apple", "quantity": "3", "price": "1.50"}},
        "quantity: must be an integer, got str",
    ),
    "price as a float": (
        {"type": "AddItem", "payload": {"item_id": "apple", "quantity": 3, "price": 1.5}},
        "price: must be exact: pass a Decimal or a string like '1.50', not a float",
    ),
}


@pytest.mark.parametrize(
    ("changes", "reason"), REJECTED_ENVELOPES.values(), ids=list(REJECTED_ENVELOPES)
)
def test_an_invalid_envelope_with_a_readable_command_id_is_rejected_in_the_command_log(
    start_worker: Callable[..., WorkerProcess],
    client: CommandClient,
    pg: Engine,
    broker: redis.Redis,
    changes: dict[str, Any],
    reason: str,
) -> None:
    worker = start_worker()
    bad = envelope(**changes)
    command_id = bad["command_id"]

    send_task(client, [bad], task_id=command_id)
    outcome = client.wait(command_id, timeout=30)

    expected = Outcome(
        status="rejected",
        command_id=command_id,
        order_id="order-poison",
        error="InvalidCommand",
        message=reason,
    )
    assert outcome == expected
    row = logged(pg, command_id)
    assert row is not None
    assert (row.status, row.command_type, row.aggregate_id) == (
        "rejected",
        changes["type"],
        "order-poison",
    )
    assert Outcome.from_dict(row.outcome) == expected
    # Reading it again later gives the same answer, and nothing was dead-lettered.
    assert client.outcome(command_id) == expected
    assert letters(pg) == []
    assert_worker_serves_and_nothing_is_stuck(worker, client, pg, broker)
    assert received(worker, command_id) == 1, "the poison message was delivered again"


def test_an_envelope_over_64_kb_is_rejected_and_recorded_without_its_bulk(
    start_worker: Callable[..., WorkerProcess],
    client: CommandClient,
    pg: Engine,
    broker: redis.Redis,
) -> None:
    worker = start_worker()
    bad = encode(CancelOrder("order-poison", "changed my mind"))
    bad["payload"]["reason"] = "x" * 70_000
    command_id = bad["command_id"]

    send_task(client, [bad], task_id=command_id)
    outcome = client.wait(command_id, timeout=30)

    assert (outcome.status, outcome.error, outcome.order_id) == (
        "rejected",
        "InvalidCommand",
        "order-poison",
    )
    match = re.fullmatch(r"envelope: is (\d+) bytes, above (\d+)", outcome.message or "")
    assert match, outcome.message
    assert int(match[1]) > 70_000
    assert int(match[2]) == MAX_ENVELOPE_BYTES
    row = logged(pg, command_id)
    assert row is not None
    assert (row.status, row.command_type) == ("rejected", "CancelOrder")
    assert len(json.dumps(row.outcome)) < 1000  # the 70 kB did not go into the log
    assert_worker_serves_and_nothing_is_stuck(worker, client, pg, broker)
    assert received(worker, command_id) == 1


# -- task messages without a readable command id: the dead-letter table -----------------

UNREADABLE_IDS = {
    "no command_id": (None, "command_id: must be a UUID, got None"),
    "not a UUID": ("order-1", "command_id: must be a UUID, got 'order-1'"),
    "a number": (12345, "command_id: must be a UUID, got 12345"),
}


@pytest.mark.parametrize(
    ("command_id", "reason"), UNREADABLE_IDS.values(), ids=list(UNREADABLE_IDS)
)
def test_an_envelope_without_a_readable_command_id_is_dead_lettered_with_its_json(
    start_worker: Callable[..., WorkerProcess],
    client: CommandClient,
    pg: Engine,
    broker: redis.Redis,
    command_id: Any,
    reason: str,
) -> None:
    worker = start_worker()
    bad = envelope(command_id=command_id)
    if command_id is None:
        del bad["command_id"]

    task_id = send_task(client, [bad])
    outcome = client.wait(task_id, timeout=30)

    assert (outcome.status, outcome.error, outcome.message) == (
        "rejected",
        "InvalidCommand",
        reason,
    )
    [letter] = dead_lettered(pg)
    assert letter.source == COMMANDS_QUEUE
    assert letter.reason == f"InvalidCommand: {reason}"
    assert json.loads(letter.body) == bad
    assert rejections(pg) == 0
    assert_worker_serves_and_nothing_is_stuck(worker, client, pg, broker)
    assert received(worker, task_id) == 1


NOT_OBJECTS = {
    "a list": (["CreateOrder", "order-1", "customer-1"], "list"),
    "a string": ('{"type": "CreateOrder"}', "str"),
    "a number": (42, "int"),
    "null": (None, "NoneType"),
}


@pytest.mark.parametrize(("argument", "kind"), NOT_OBJECTS.values(), ids=list(NOT_OBJECTS))
def test_an_argument_that_is_not_a_json_object_is_dead_lettered(
    start_worker: Callable[..., WorkerProcess],
    client: CommandClient,
    pg: Engine,
    broker: redis.Redis,
    argument: Any,
    kind: str,
) -> None:
    worker = start_worker()

    task_id = send_task(client, [argument])
    outcome = client.wait(task_id, timeout=30)

    reason = f"envelope: must be a JSON object, got {kind}"
    assert (outcome.status, outcome.error, outcome.message) == (
        "rejected",
        "InvalidCommand",
        reason,
    )
    [letter] = dead_lettered(pg)
    assert letter.reason == f"InvalidCommand: {reason}"
    assert json.loads(letter.body) == argument
    assert_worker_serves_and_nothing_is_stuck(worker, client, pg, broker)
    assert received(worker, task_id) == 1


# -- all of them at once ----------------------------------------------------------------


def test_a_burst_of_poison_leaves_every_message_recorded_once_and_the_worker_serving(
    start_worker: Callable[..., WorkerProcess],
    client: CommandClient,
    pg: Engine,
    broker: redis.Redis,
    redis_url: str,
) -> None:
    worker = start_worker()
    publish_raw(redis_url, b"{not json", task_headers())  # (a)
    publish_raw(redis_url, json.dumps(envelope()).encode(), headers={})  # (b)
    with_ids = [envelope(**changes) for changes, _ in REJECTED_ENVELOPES.values()]  # (c-e)
    oversized = encode(CancelOrder("order-poison", "changed my mind"))  # (f)
    oversized["payload"]["reason"] = "x" * 70_000
    with_ids.append(oversized)
    for bad in with_ids:
        send_task(client, [bad], task_id=bad["command_id"])
    without_ids = [  # (g), (h)
        send_task(client, [envelope(command_id="order-1")]),
        send_task(client, [["CreateOrder", "order-1"]]),
        send_task(client, ["CreateOrder order-1"]),
    ]

    outcomes = [client.wait(bad["command_id"], timeout=30) for bad in with_ids]
    outcomes += [client.wait(task_id, timeout=30) for task_id in without_ids]

    assert {(outcome.status, outcome.error) for outcome in outcomes} == {
        ("rejected", "InvalidCommand")
    }
    assert_worker_serves_and_nothing_is_stuck(worker, client, pg, broker)
    assert rejections(pg) == len(with_ids)
    assert sorted(letter.reason.split(":")[0] for letter in letters(pg)) == [
        "InvalidCommand",
        "InvalidCommand",
        "InvalidCommand",
        "not a task message",
        "undecodable message (application/json)",
    ]
    task_ids = [bad["command_id"] for bad in with_ids] + without_ids
    assert [received(worker, task_id) for task_id in task_ids] == [1] * len(task_ids)


# -- gaps: poison that is not recorded, or that takes the worker down -----------------


def test_a_task_message_with_the_wrong_number_of_arguments_is_rejected_once_and_not_stuck(
    start_worker: Callable[..., WorkerProcess],
    client: CommandClient,
    pg: Engine,
    broker: redis.Redis,
) -> None:
    worker = start_worker()

    no_envelope = send_task(client, [])
    two_envelopes = send_task(client, [envelope(), envelope()])

    for task_id in (no_envelope, two_envelopes):
        outcome = client.wait(task_id, timeout=30)
        assert (outcome.status, outcome.error) == ("rejected", "InvalidCommand"), outcome
        assert "exactly one envelope" in (outcome.message or "")
    assert_worker_serves_and_nothing_is_stuck(worker, client, pg, broker)
    assert received(worker, no_envelope) == received(worker, two_envelopes) == 1


def test_a_task_message_with_the_wrong_number_of_arguments_is_recorded(
    start_worker: Callable[..., WorkerProcess],
    client: CommandClient,
    pg: Engine,
) -> None:
    start_worker()
    task_id = send_task(client, [envelope(), envelope()])
    client.wait(task_id, timeout=30)

    # The outcome is stored before the message is acknowledged, and a dead letter would
    # be written before either.
    dead_lettered(pg, count=1, timeout=2)


def test_a_task_message_whose_kwargs_are_not_a_mapping_is_recorded_and_answered(
    start_worker: Callable[..., WorkerProcess],
    client: CommandClient,
    pg: Engine,
    redis_url: str,
) -> None:
    start_worker()
    task_id = str(uuid.uuid4())
    body = json.dumps([[envelope()], ["not", "a", "mapping"], {}]).encode()

    publish_raw(redis_url, body, task_headers(task_id))

    outcome = client.wait(task_id, timeout=5)  # OutcomeTimeout: the state stays PENDING
    assert outcome.status in ("rejected", "failed")
    dead_lettered(pg, count=1)


@pytest.mark.parametrize(
    "body", [b'{"command": "CreateOrder"}', b'[["args"], {}]'], ids=["an object", "two items"]
)
def test_a_task_body_that_is_not_a_celery_triple_is_dead_lettered_and_the_worker_lives(
    start_worker: Callable[..., WorkerProcess],
    client: CommandClient,
    pg: Engine,
    broker: redis.Redis,
    redis_url: str,
    body: bytes,
) -> None:
    worker = start_worker()

    publish_raw(redis_url, body, task_headers())
    time.sleep(2)

    assert worker.process.poll() is None, "the worker died:\n" + worker.log()[-3000:]
    dead_lettered(pg, count=1)
    assert_worker_serves_and_nothing_is_stuck(worker, client, pg, broker)


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b'{"type": "CreateOrder\x00"', "application/json"),
        (pickle.dumps(([envelope()], {}, {})), "application/x-python-serialize"),
    ],
    ids=["NUL in a broken JSON body", "pickle content"],
)
def test_a_body_with_nul_bytes_is_dead_lettered(
    start_worker: Callable[..., WorkerProcess],
    client: CommandClient,
    pg: Engine,
    broker: redis.Redis,
    redis_url: str,
    body: bytes,
    content_type: str,
) -> None:
    worker = start_worker()

    publish_raw(redis_url, body, task_headers(), content_type=content_type)

    # The message itself is refused (pickle is never deserialized) and not redelivered;
    # the bug is only that no record of it is kept.
    eventually(lambda: queues(broker) == (0, 0, 0), "the message to be taken")
    assert_worker_serves_and_nothing_is_stuck(worker, client, pg, broker)
    [letter] = dead_lettered(pg, timeout=2)  # the valid command came after it
    assert letter.reason
