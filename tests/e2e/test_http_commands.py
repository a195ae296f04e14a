"""The HTTP command door (``POST /api/commands``, ``GET /api/commands/{id}``), served by a
real ``orders serve`` process, in front of a real worker."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import redis
from sqlalchemy import Engine

from commands import AddItem, CreateOrder, Outcome
from commands.client import CommandClient
from commands.envelope import encode
from commands.transport import COMMANDS_QUEUE, SENT_AT_HEADER
from store import open_event_store
from tests.support.api_server import ApiServer
from tests.support.workers import WorkerProcess


@pytest.fixture
def api(worker_env: dict[str, str]) -> Iterator[ApiServer]:
    server = ApiServer(worker_env).wait_ready()
    yield server
    server.stop()


def post(api: ApiServer, envelope: Any, **headers: str) -> httpx.Response:
    body = envelope if isinstance(envelope, bytes) else json.dumps(envelope).encode()
    return httpx.post(
        f"{api.url}/api/commands",
        content=body,
        headers={"Content-Type": "application/json", **headers},
        timeout=30,
    )


def outcome_of(api: ApiServer, command_id: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        answer = httpx.get(f"{api.url}/api/commands/{command_id}", timeout=10)
        if answer.status_code == 200:
            found: dict[str, Any] = answer.json()
            return found
        assert answer.status_code == 404, answer.text
        assert answer.json()["error"]["code"] == "NoOutcome"
        if time.monotonic() > deadline:
            raise AssertionError(f"no outcome for {command_id}")
        time.sleep(0.1)


def test_a_command_posted_is_queued_and_its_outcome_is_the_command_logs(
    start_worker: Callable[..., WorkerProcess], api: ApiServer, pg: Engine
) -> None:
    start_worker()
    envelope = encode(CreateOrder("order-http", "customer-1"))

    sent = post(api, envelope)

    assert sent.status_code == 202, sent.text
    assert sent.json() == {
        "command_id": envelope["command_id"],
        "status": "queued",
        "outcome": f"/api/commands/{envelope['command_id']}",
    }
    assert sent.headers["Location"] == f"/api/commands/{envelope['command_id']}"
    outcome = outcome_of(api, envelope["command_id"])
    assert outcome["status"] == "accepted"
    assert Outcome.from_dict(outcome) == open_event_store(pg).find_outcome(envelope["command_id"])
    # Posting it again is safe: the same answer, nothing written twice.
    assert post(api, envelope).status_code == 202
    assert outcome_of(api, envelope["command_id"]) == outcome
    assert len(open_event_store(pg).load("order-http")) == 1


def test_the_door_enqueues_exactly_what_the_python_client_enqueues(
    api: ApiServer, broker: redis.Redis, redis_url: str
) -> None:
    # No worker: the messages stay on the queue to be compared.
    command = AddItem("order-1", "apple", 3, "1.50")
    client = CommandClient(redis_url, redis_url)
    client.send(command)
    client.close()
    post(api, encode(command))

    through_python, through_http = (
        json.loads(item) for item in broker.lrange(COMMANDS_QUEUE, 0, -1)
    )
    for message in (through_python, through_http):
        message.pop("properties")  # delivery tags differ
        # Both say when they were sent (for the end-to-end metric), each its own time.
        assert isinstance(message["headers"].pop(SENT_AT_HEADER), float)
        for volatile in ("origin",):
            message["headers"].pop(volatile, None)
    assert through_http == through_python


@pytest.mark.parametrize(
    ("body", "code", "words"),
    [
        (b"{not json", "InvalidJson", "not JSON"),
        (b"[1, 2]", "InvalidCommand", "must be a JSON object"),
        (
            json.dumps(
                {**encode(AddItem("o-1", "apple", 3, "1.50")), "type": "ShipOrder"}
            ).encode(),
            "InvalidCommand",
            "type: unknown command type 'ShipOrder'",
        ),
        (
            json.dumps(
                {**encode(AddItem("o-1", "apple", 3, "1.50")), "payload": {"order_id": "o-1"}}
            ).encode(),
            "InvalidCommand",
            "payload: AddItem needs",
        ),
    ],
    ids=["not JSON", "not an object", "unknown type", "missing fields"],
)
def test_an_invalid_command_is_400_naming_what_is_wrong_and_queues_nothing(
    api: ApiServer, broker: redis.Redis, body: bytes, code: str, words: str
) -> None:
    answer = post(api, body)

    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["code"] == code
    assert words in answer.json()["error"]["message"]
    assert broker.llen(COMMANDS_QUEUE) == 0


def test_a_body_over_64_kb_is_413(api: ApiServer, broker: redis.Redis) -> None:
    answer = post(api, b'{"x": "' + b"y" * 70_000 + b'"}')

    assert answer.status_code == 413
    assert answer.json()["error"]["code"] == "TooLarge"
    assert broker.llen(COMMANDS_QUEUE) == 0


def test_an_idempotency_key_must_be_the_command_id(api: ApiServer, broker: redis.Redis) -> None:
    envelope = encode(CreateOrder("order-key", "customer-1"))

    wrong = post(api, envelope, **{"Idempotency-Key": str(uuid.uuid4())})
    right = post(api, envelope, **{"Idempotency-Key": envelope["command_id"].upper()})

    assert wrong.status_code == 400
    assert wrong.json()["error"]["code"] == "IdempotencyKeyMismatch"
    assert right.status_code == 202
    assert broker.llen(COMMANDS_QUEUE) == 1


def test_an_unknown_command_is_404_json(api: ApiServer) -> None:
    answer = httpx.get(f"{api.url}/api/commands/{uuid.uuid4()}", timeout=10)

    assert answer.status_code == 404
    assert answer.headers["content-type"] == "application/json"
    assert answer.json()["error"]["code"] == "NoOutcome"


def test_a_broker_that_is_down_is_503_and_says_to_resend(worker_env: dict[str, str]) -> None:
    server = ApiServer(
        {**worker_env, "ORDERS_BROKER_URL": "redis://127.0.0.1:1/0", "ORDERS_PUBLISH_TIMEOUT": "1"}
    ).wait_ready()
    try:
        answer = post(server, encode(CreateOrder("order-down", "customer-1")))
    finally:
        server.stop()

    assert answer.status_code == 503
    assert answer.json()["error"]["code"] == "BrokerUnavailable"
    assert "send it again with the same command_id" in answer.json()["error"]["message"]
    assert answer.headers["Retry-After"] == "1"


def test_the_openapi_document_describes_the_door(api: ApiServer) -> None:
    spec = httpx.get(f"{api.url}/openapi.json", timeout=10).json()

    assert {"post"} <= spec["paths"]["/api/commands"].keys()
    assert {"get"} <= spec["paths"]["/api/commands/{command_id}"].keys()
    assert httpx.get(f"{api.url}/docs", timeout=10).status_code == 200
