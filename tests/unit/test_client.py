"""The producer client's logic, on fakeredis: no broker, no Redis server, no network.

The client's Celery app gets a ``fakeredis.FakeRedis`` as its result backend's Redis
client (``app.backend.client``, a cached property of Celery's ``RedisBackend``), and
the tests write results through that backend the way a worker would. ``wait`` works
here too: fakeredis implements the pub/sub that Celery's result consumer listens on.
Sending is tested by replacing ``app.send_task``: the broker is never contacted.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any
from unittest import mock

import fakeredis
import pytest
from celery.backends.redis import RedisBackend
from kombu.exceptions import OperationalError
from redis.exceptions import ConnectionError as RedisConnectionError

from commands import CancelOrder, CreateOrder, InvalidCommand, Outcome
from commands.client import BrokerUnavailable, CommandClient, OutcomeTimeout, Receipt
from commands.envelope import MAX_ENVELOPE_BYTES, encode
from commands.transport import COMMANDS_QUEUE, HANDLE_COMMAND

FAKE = "redis://fake:6379/0"

# Celery's backend calls setex, which fakeredis flags as deprecated: noise, not a finding.
pytestmark = pytest.mark.filterwarnings("ignore:Call to deprecated setex:DeprecationWarning")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class NetworkUsed(AssertionError):
    pass


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any real connection attempt (name lookup first) fails the test loudly."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise NetworkUsed(f"a unit test tried to reach the network: {args[:2]}")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture
def client() -> Iterator[CommandClient]:
    producer = CommandClient(FAKE, FAKE)
    backend = producer._app.backend
    assert isinstance(backend, RedisBackend)
    backend.client = fakeredis.FakeRedis()  # before anything touches the real one
    yield producer
    producer.close()


@pytest.fixture
def backend(client: CommandClient) -> RedisBackend:
    """The backend the client reads from, as a worker would write to it.

    Captured here because Celery keeps one backend per thread: a helper thread must
    use this object, not ``client._app.backend``.
    """
    found: RedisBackend = client._app.backend
    return found


def new_id() -> str:
    return str(uuid.uuid4())


def accepted(command_id: str) -> Outcome:
    return Outcome(
        status="accepted",
        command_id=command_id,
        order_id="order-001",
        version=1,
        events=("OrderCreated",),
    )


def later(seconds: float, action: Any) -> threading.Timer:
    timer = threading.Timer(seconds, action)
    timer.start()
    return timer


# -- outcome ----------------------------------------------------------------------------


def test_outcome_is_none_while_nothing_is_stored(client: CommandClient) -> None:
    assert client.outcome(new_id()) is None


@pytest.mark.parametrize(
    "outcome",
    [
        accepted("8a4b0f0e-0000-4000-8000-000000000001"),
        Outcome(
            status="rejected",
            command_id="8a4b0f0e-0000-4000-8000-000000000002",
            order_id="order-001",
            error="NothingToPay",
            message="order order-001 has nothing to pay",
        ),
        Outcome(
            status="failed",
            command_id="8a4b0f0e-0000-4000-8000-000000000003",
            error="DatabaseUnavailable",
            message="the event store was unreachable through 5 retries",
        ),
    ],
    ids=lambda outcome: outcome.status,
)
def test_outcome_returns_what_the_worker_stored(
    client: CommandClient, backend: RedisBackend, outcome: Outcome
) -> None:
    backend.store_result(outcome.command_id, outcome.to_dict(), "SUCCESS")

    assert client.outcome(outcome.command_id) == outcome


@pytest.mark.parametrize("state", ["RECEIVED", "STARTED"])
def test_outcome_is_none_while_the_command_is_in_progress(
    client: CommandClient, backend: RedisBackend, state: str
) -> None:
    command_id = new_id()
    backend.store_result(command_id, {"pid": 1, "hostname": "worker@host"}, state)

    assert client.outcome(command_id) is None


def test_outcome_is_none_while_the_command_waits_for_a_retry(
    client: CommandClient, backend: RedisBackend
) -> None:
    command_id = new_id()
    backend.mark_as_retry(command_id, ConnectionError("database down"))

    assert client._app.AsyncResult(command_id).state == "RETRY"
    assert client.outcome(command_id) is None


class LedgerCorrupt(Exception):
    pass


@pytest.mark.parametrize(
    ("error", "name", "message"),
    [
        (ValueError("boom"), "ValueError", "boom"),
        (KeyError("order_id"), "KeyError", "'order_id'"),
        (LedgerCorrupt("row 7 is unreadable"), "LedgerCorrupt", "row 7 is unreadable"),
    ],
    ids=["ValueError", "KeyError", "a project exception"],
)
def test_a_task_that_crashed_is_a_failed_outcome_named_after_its_exception(
    client: CommandClient, backend: RedisBackend, error: Exception, name: str, message: str
) -> None:
    command_id = new_id()
    backend.mark_as_failure(command_id, error)

    expected = Outcome(status="failed", command_id=command_id, error=name, message=message)
    assert client.outcome(command_id) == expected
    assert client.wait(command_id, timeout=1) == expected


def test_a_revoked_command_is_a_failed_outcome(
    client: CommandClient, backend: RedisBackend
) -> None:
    command_id = new_id()
    backend.mark_as_revoked(command_id, reason="terminated")

    outcome = client.outcome(command_id)

    assert outcome is not None
    assert (outcome.status, outcome.command_id) == ("failed", command_id)
    assert outcome.error == "TaskRevokedError"


def test_receipt_outcome_and_wait_delegate_to_the_client(
    client: CommandClient, backend: RedisBackend
) -> None:
    command_id = new_id()
    receipt = Receipt(command_id, client)
    assert receipt.outcome() is None

    backend.store_result(command_id, accepted(command_id).to_dict(), "SUCCESS")

    assert receipt.outcome() == accepted(command_id)
    assert receipt.wait(timeout=1) == accepted(command_id)


# -- wait -------------------------------------------------------------------------------


def test_wait_returns_an_outcome_already_stored(
    client: CommandClient, backend: RedisBackend
) -> None:
    command_id = new_id()
    backend.store_result(command_id, accepted(command_id).to_dict(), "SUCCESS")

    assert client.wait(command_id, timeout=1) == accepted(command_id)


def test_wait_returns_an_outcome_stored_while_it_waits(
    client: CommandClient, backend: RedisBackend
) -> None:
    command_id = new_id()
    later(0.2, lambda: backend.store_result(command_id, accepted(command_id).to_dict(), "SUCCESS"))

    started = time.monotonic()
    outcome = client.wait(command_id, timeout=5)

    assert outcome == accepted(command_id)
    assert time.monotonic() - started < 3


def test_wait_on_nothing_raises_outcome_timeout_within_the_timeout(
    client: CommandClient,
) -> None:
    command_id = new_id()

    started = time.monotonic()
    with pytest.raises(OutcomeTimeout) as raised:
        client.wait(command_id, timeout=0.3)
    took = time.monotonic() - started

    assert 0.3 <= took < 1.5
    assert raised.value.command_id == command_id
    assert str(raised.value) == f"no outcome for command {command_id} within 0.3 s"
    assert isinstance(raised.value, TimeoutError)


def test_wait_keeps_waiting_through_a_retry_for_the_final_outcome(
    client: CommandClient, backend: RedisBackend
) -> None:
    command_id = new_id()
    backend.mark_as_retry(command_id, ConnectionError("database down"))
    failed = Outcome(status="failed", command_id=command_id, error="DatabaseUnavailable")
    later(0.3, lambda: backend.store_result(command_id, failed.to_dict(), "SUCCESS"))

    assert client.wait(command_id, timeout=5) == failed


def test_wait_on_a_retry_that_never_ends_raises_outcome_timeout(
    client: CommandClient, backend: RedisBackend
) -> None:
    command_id = new_id()
    backend.mark_as_retry(command_id, ConnectionError("database down"))

    started = time.monotonic()
    with pytest.raises(OutcomeTimeout):
        client.wait(command_id, timeout=0.3)
    assert time.monotonic() - started < 1.5


# -- send -------------------------------------------------------------------------------


def test_send_publishes_the_envelope_with_the_command_id_as_task_id(
    client: CommandClient,
) -> None:
    command = CreateOrder("order-001", "customer-123")
    with mock.patch.object(client._app, "send_task") as send_task:
        receipt = client.send(command)

    assert receipt == Receipt(command.command_id, client)
    send_task.assert_called_once_with(
        HANDLE_COMMAND, args=[encode(command)], task_id=command.command_id, queue=COMMANDS_QUEUE
    )


@pytest.mark.parametrize(
    "down",
    [
        OperationalError("Error 111 connecting to fake:6379. Connection refused."),
        ConnectionRefusedError(111, "Connection refused"),
        RedisConnectionError("Error 111 connecting to fake:6379."),
        RuntimeError(
            "Retry limit exceeded while trying to reconnect to the Celery result store\n"
            "backend. The Celery application must be restarted."
        ),
    ],
    ids=["kombu OperationalError", "OSError", "RedisError", "result backend RuntimeError"],
)
def test_send_to_an_unreachable_broker_raises_broker_unavailable(
    client: CommandClient, down: Exception
) -> None:
    command = CreateOrder("order-001", "customer-123")
    with (
        mock.patch.object(client._app, "send_task", side_effect=down),
        pytest.raises(BrokerUnavailable) as raised,
    ):
        client.send(command)

    error = raised.value
    assert error.command_id == command.command_id
    assert error.__cause__ is down
    assert str(error).startswith(f"could not enqueue command {command.command_id} on {FAKE}: ")
    assert "\n" not in str(error)
    assert isinstance(error, ConnectionError)


def test_broker_unavailable_does_not_show_the_broker_password() -> None:
    secret = CommandClient("redis://:s3cret@fake:6379/0", FAKE)
    command = CreateOrder("order-001", "customer-123")
    with (
        mock.patch.object(secret._app, "send_task", side_effect=OperationalError("down")),
        pytest.raises(BrokerUnavailable) as raised,
    ):
        secret.send(command)

    assert "s3cret" not in str(raised.value)
    assert "redis://***@fake:6379/0" in str(raised.value)


def test_send_lets_other_errors_through_unchanged(client: CommandClient) -> None:
    bug = TypeError("a bug in the producer, not an outage")
    with (
        mock.patch.object(client._app, "send_task", side_effect=bug),
        pytest.raises(TypeError) as raised,
    ):
        client.send(CreateOrder("order-001", "customer-123"))

    assert raised.value is bug


def test_send_refuses_an_envelope_over_64_kb_before_sending_anything(
    client: CommandClient,
) -> None:
    command = CancelOrder("order-001", "changed my mind")
    # Valid fields cannot add up to 64 kB, so the limit is reached past validation,
    # as a producer patching a frozen command (or a future longer field) would.
    object.__setattr__(command, "reason", "x" * 70_000)

    with (
        mock.patch.object(client._app, "send_task") as send_task,
        pytest.raises(InvalidCommand) as raised,
    ):
        client.send(command)

    assert raised.value.field == "envelope"
    assert f"above {MAX_ENVELOPE_BYTES}" in raised.value.reason
    send_task.assert_not_called()


# -- configuration ------------------------------------------------------------------------


def test_explicit_urls_win_over_an_unusable_environment() -> None:
    code = (
        "from commands.client import CommandClient\n"
        "client = CommandClient('redis://fake:6379/0', 'redis://fake:6379/0')\n"
        "print(client._broker)\n"
    )
    env = {**os.environ, "ORDERS_BROKER_URL": "amqp://guest@rabbit//"}
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 0, done.stderr[-500:]
    assert done.stdout.strip() == FAKE
