"""The producer client's logic, on fakeredis: no broker, no Redis server, no network.

The client's Celery app gets a ``fakeredis.FakeRedis`` as its result backend's Redis
client (``app.backend.client``, a cached property of Celery's ``RedisBackend``), and
the tests write results through that backend the way a worker would. ``wait`` works
here too: fakeredis implements the pub/sub that Celery's result consumer listens on.
Sending is tested by replacing ``app.send_task``: the broker is never contacted.
"""

from __future__ import annotations

import itertools
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any
from unittest import mock

import fakeredis
import pytest
from celery.backends.redis import RedisBackend
from kombu.exceptions import OperationalError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from commands import CancelOrder, CreateOrder, InvalidCommand, Outcome
from commands.client import BrokerUnavailable, CommandClient, OutcomeTimeout, Receipt
from commands.envelope import MAX_ENVELOPE_BYTES, encode
from commands.transport import COMMANDS_QUEUE, HANDLE_COMMAND, BrokerConfigError
from tests.support.ids import new_id

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
    "error",
    [ValueError("boom"), KeyError("order_id"), LedgerCorrupt("row 7 is unreadable")],
    ids=["ValueError", "KeyError", "a project exception"],
)
def test_a_task_that_crashed_is_no_outcome_never_a_failed_one(
    client: CommandClient, backend: RedisBackend, error: Exception
) -> None:
    # A crash says nothing about the command: it may have been appended first, and a
    # redelivery or a resend will answer from the command log.
    command_id = new_id()
    backend.mark_as_failure(command_id, error)

    assert client.outcome(command_id) is None
    with pytest.raises(OutcomeTimeout):
        client.wait(command_id, timeout=0.3)


def test_a_revoked_command_is_no_outcome_never_a_failed_one(
    client: CommandClient, backend: RedisBackend
) -> None:
    # Seen after a broker restart: the task was terminated after its events committed.
    command_id = new_id()
    backend.mark_as_revoked(command_id, reason="terminated")

    assert client.outcome(command_id) is None


@pytest.mark.parametrize("state", ["FAILURE", "REVOKED"])
def test_wait_goes_on_past_a_crash_or_revoke_to_the_outcome_a_redelivery_stores(
    client: CommandClient, backend: RedisBackend, state: str
) -> None:
    command_id = new_id()
    if state == "FAILURE":
        backend.mark_as_failure(command_id, ValueError("killed"))
    else:
        backend.mark_as_revoked(command_id, reason="terminated")
    assert client.outcome(command_id) is None  # Celery would now cache it as final
    later(0.3, lambda: backend.store_result(command_id, accepted(command_id).to_dict(), "SUCCESS"))

    assert client.wait(command_id, timeout=5) == accepted(command_id)
    assert client.outcome(command_id) == accepted(command_id)


@pytest.mark.parametrize(
    "stored",
    [{"status": "done"}, ["accepted"], {"status": "accepted"}, "accepted"],
    ids=["unknown status", "a list", "no command id", "a string"],
)
def test_a_result_that_is_not_an_outcome_is_no_outcome(
    client: CommandClient, backend: RedisBackend, stored: Any
) -> None:
    command_id = new_id()
    backend.store_result(command_id, stored, "SUCCESS")

    assert client.outcome(command_id) is None


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


def published(send_task_message: mock.Mock) -> list[tuple[str, list[Any], str]]:
    """(task id, args, queue) of each message handed to the broker."""
    sent = []
    for call in send_task_message.call_args_list:
        _producer, name, message = call.args
        assert name == HANDLE_COMMAND
        sent.append((message.headers["id"], message.body[0], call.kwargs["queue"]))
    return sent


def test_send_publishes_the_envelope_with_the_command_id_as_task_id(
    client: CommandClient,
) -> None:
    command = CreateOrder("order-001", "customer-123")
    with (
        mock.patch.object(client._app, "producer_or_acquire"),
        mock.patch.object(client._app.amqp, "send_task_message") as send_task_message,
    ):
        receipt = client.send(command)

    assert receipt == Receipt(command.command_id, client)
    assert receipt.command is command
    assert published(send_task_message) == [(command.command_id, [encode(command)], COMMANDS_QUEUE)]
    assert send_task_message.call_args.kwargs["retry"] is False  # the client bounds retries


def test_send_does_not_touch_the_result_backend(client: CommandClient) -> None:
    # Celery's send_task subscribes to the result first, with retries of its own: a
    # stalled Redis held sends past their bound there (14 s for a 10 s timeout).
    with (
        mock.patch.object(client._app, "producer_or_acquire"),
        mock.patch.object(client._app.amqp, "send_task_message"),
        mock.patch.object(client._app.backend, "on_task_call") as subscribe,
    ):
        client.send(CreateOrder("order-001", "customer-123"))

    subscribe.assert_not_called()


DOWN = [
    OperationalError("Error 111 connecting to fake:6379. Connection refused."),
    ConnectionRefusedError(111, "Connection refused"),
    RedisConnectionError("Error 111 connecting to fake:6379."),
    RedisTimeoutError("Timeout reading from socket"),
]


@pytest.mark.parametrize(
    "down", DOWN, ids=["kombu OperationalError", "OSError", "RedisError", "a timeout"]
)
def test_send_to_an_unreachable_broker_raises_broker_unavailable_within_its_timeout(
    down: Exception,
) -> None:
    client = CommandClient(FAKE, FAKE, publish_timeout=1.5)
    command = CreateOrder("order-001", "customer-123")
    started = time.monotonic()
    with (
        mock.patch.object(client._app, "producer_or_acquire"),
        mock.patch.object(client._app.amqp, "send_task_message", side_effect=down) as tried,
        pytest.raises(BrokerUnavailable) as raised,
    ):
        client.send(command)
    took = time.monotonic() - started

    error = raised.value
    assert error.command_id == command.command_id
    assert error.__cause__ is down
    assert str(error).startswith(
        f"the broker {FAKE} did not take command {command.command_id} within 1.5 s ("
    )
    # Truthful: a broker that stalls may have taken it. Resending is the way out.
    assert str(error).endswith(
        "it may still have been enqueued: send it again with the same command_id"
    )
    assert "\n" not in str(error)
    assert isinstance(error, ConnectionError)
    assert tried.call_count >= 2  # it tried again within the bound
    assert took < 1.5


def test_send_retries_a_broker_that_comes_back_within_the_timeout(client: CommandClient) -> None:
    command = CreateOrder("order-001", "customer-123")
    with (
        mock.patch.object(client._app, "producer_or_acquire"),
        mock.patch.object(
            client._app.amqp, "send_task_message", side_effect=[DOWN[0], DOWN[2], None]
        ) as tried,
    ):
        client.send(command)

    assert [sent[0] for sent in published(tried)] == [command.command_id] * 3


def test_broker_unavailable_does_not_show_the_broker_password() -> None:
    secret = CommandClient("redis://:s3cret@fake:6379/0", FAKE, publish_timeout=0.5)
    command = CreateOrder("order-001", "customer-123")
    with (
        mock.patch.object(secret._app, "producer_or_acquire"),
        mock.patch.object(secret._app.amqp, "send_task_message", side_effect=DOWN[0]),
        pytest.raises(BrokerUnavailable) as raised,
    ):
        secret.send(command)

    assert "s3cret" not in str(raised.value)
    assert "redis://:***@fake:6379/0" in str(raised.value)


def test_send_lets_other_errors_through_unchanged(client: CommandClient) -> None:
    bug = TypeError("a bug in the producer, not an outage")
    with (
        mock.patch.object(client._app, "producer_or_acquire"),
        mock.patch.object(client._app.amqp, "send_task_message", side_effect=bug),
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
        mock.patch.object(client._app.amqp, "send_task_message") as send_task_message,
        pytest.raises(InvalidCommand) as raised,
    ):
        client.send(command)

    assert raised.value.field == "envelope"
    assert f"above {MAX_ENVELOPE_BYTES}" in raised.value.reason
    send_task_message.assert_not_called()


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


def test_the_publish_timeout_comes_from_the_environment_unless_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ORDERS_PUBLISH_TIMEOUT", "2.5")

    assert CommandClient(FAKE, FAKE).publish_timeout == 2.5
    assert CommandClient(FAKE, FAKE, publish_timeout=4).publish_timeout == 4


@pytest.mark.parametrize("raw", ["soon", "0.1", "nan", "-3", "inf"])
def test_an_unusable_publish_timeout_is_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, raw: str
) -> None:
    monkeypatch.setenv("ORDERS_PUBLISH_TIMEOUT", raw)

    with pytest.raises(BrokerConfigError, match=r"^ORDERS_PUBLISH_TIMEOUT must be"):
        CommandClient(FAKE, FAKE)


def test_a_client_without_a_broker_refuses_to_send_into_its_own_memory(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Nothing would ever take the command: it would die with the process, silently.
    monkeypatch.delenv("ORDERS_BROKER_URL", raising=False)

    with pytest.raises(BrokerConfigError, match="ORDERS_BROKER_URL is not set"):
        CommandClient()


# -- resend_every -------------------------------------------------------------------------


def test_wait_with_resend_every_sends_the_same_message_again_waiting_longer_each_time(
    client: CommandClient, backend: RedisBackend
) -> None:
    command = CreateOrder("order-001", "customer-123")
    times: list[float] = []
    with (
        mock.patch.object(client._app, "producer_or_acquire"),
        mock.patch.object(
            client._app.amqp,
            "send_task_message",
            side_effect=lambda *args, **kwargs: times.append(time.monotonic()),
        ) as sent,
    ):
        receipt = client.send(command)
        store = lambda: backend.store_result(  # noqa: E731
            command.command_id, accepted(command.command_id).to_dict(), "SUCCESS"
        )
        later(1.6, store)
        outcome = receipt.wait(timeout=5, resend_every=0.2)

    assert outcome == accepted(command.command_id)
    messages = published(sent)
    # The first send and three resends, 0.2, 0.4 and 0.8 s apart: a command waiting in a
    # backlog is not sent over and over. Each one the same task id and envelope.
    assert len(messages) == 4, messages
    gaps = [after - before for before, after in itertools.pairwise(times)]
    for gap, expected in zip(gaps, (0.2, 0.4, 0.8), strict=True):
        assert expected - 0.02 <= gap <= expected + 0.15, gaps
    assert all(
        message == (command.command_id, [encode(command)], COMMANDS_QUEUE) for message in messages
    )


def test_wait_with_resend_every_goes_on_while_the_broker_is_down(
    client: CommandClient, backend: RedisBackend
) -> None:
    command = CreateOrder("order-001", "customer-123")
    with (
        mock.patch.object(client._app, "producer_or_acquire"),
        mock.patch.object(client._app.amqp, "send_task_message"),
    ):
        receipt = client.send(command)
    store = lambda: backend.store_result(  # noqa: E731
        command.command_id, accepted(command.command_id).to_dict(), "SUCCESS"
    )
    later(0.8, store)
    with (
        mock.patch.object(client._app, "producer_or_acquire"),
        mock.patch.object(client._app.amqp, "send_task_message", side_effect=DOWN[0]),
    ):
        assert receipt.wait(timeout=5, resend_every=0.1) == accepted(command.command_id)


def test_resend_every_needs_the_command(client: CommandClient) -> None:
    with pytest.raises(ValueError, match="resend_every needs the command"):
        client.wait(new_id(), timeout=1, resend_every=1)
    command = CreateOrder("order-001", "customer-123")
    with pytest.raises(ValueError, match="positive"):
        client.wait(command.command_id, timeout=1, resend_every=0, command=command)
