"""The broker is down: a producer learns so within a bounded time, with the command id.

``redis://127.0.0.1:1/0``: nothing listens on port 1, so each connection attempt is
refused at once. A "black hole" (accepts TCP connections, never answers) checks the
other way a broker can be down, where only the socket timeouts end each attempt.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from commands import CreateOrder
from commands.client import BrokerUnavailable, CommandClient
from tests.support.workers import ROOT

DOWN = "redis://127.0.0.1:1/0"
# What bounds a send: publish_timeout=3 gives socket (connect) timeouts of
# max(0.5, 3 / 4) = 0.75 s and 3 retries 0 / 0.2 / 0.4 s apart, for the publish and for
# the result backend's subscription alike (commands/transport.py). A refused connection
# fails in microseconds (measured: about 0.6 s in all); a black hole takes at most a few
# timeouts (measured: about 4.5 s). 15 s leaves room for a loaded machine, yet is far
# below the unbounded hang of celery #4296.
BOUND = 15.0


def send_timed(client: CommandClient) -> tuple[CreateOrder, BrokerUnavailable, float]:
    command = CreateOrder("order-1", "customer-1")
    started = time.monotonic()
    with pytest.raises(BrokerUnavailable) as raised:
        client.send(command)
    return command, raised.value, time.monotonic() - started


@pytest.fixture
def black_hole() -> Iterator[str]:
    """redis://... of a server that accepts connections and never says a word."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                held.append(listener.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    yield f"redis://127.0.0.1:{listener.getsockname()[1]}/0"
    listener.close()
    for sock in held:
        sock.close()


def test_send_with_broker_and_backend_down_raises_broker_unavailable_in_bounded_time() -> None:
    client = CommandClient(DOWN, DOWN, publish_timeout=3)
    try:
        command, error, took = send_timed(client)
    finally:
        client.close()

    assert took < BOUND, f"send took {took:.1f} s"
    assert error.command_id == command.command_id
    assert command.command_id in str(error)
    assert str(error).startswith(f"could not enqueue command {command.command_id} on {DOWN}: ")
    assert "\n" not in str(error)  # Celery's multi-line reasons are folded into one line


def test_send_with_only_the_broker_down_raises_broker_unavailable_in_bounded_time(
    redis_url: str,
) -> None:
    client = CommandClient(DOWN, redis_url, publish_timeout=3)
    try:
        command, error, took = send_timed(client)
    finally:
        client.close()

    assert took < BOUND, f"send took {took:.1f} s"
    assert error.command_id == command.command_id
    assert "Connection refused" in str(error)  # the broker's own error, not the backend's


@pytest.mark.parametrize("backend", ["black hole", "up"])
def test_send_to_a_broker_that_never_answers_raises_broker_unavailable_in_bounded_time(
    black_hole: str, redis_url: str, backend: str
) -> None:
    client = CommandClient(
        black_hole, black_hole if backend == "black hole" else redis_url, publish_timeout=3
    )
    try:
        command, error, took = send_timed(client)
    finally:
        client.close()

    assert took < BOUND, f"send took {took:.1f} s"
    assert error.command_id == command.command_id


def test_the_cli_says_it_could_not_enqueue_and_exits_1_without_a_traceback() -> None:
    env = {**os.environ, "ORDERS_BROKER_URL": DOWN}
    env.pop("ORDERS_RESULT_BACKEND", None)  # the backend follows the broker: down too
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "workers.cli", "send", "create-order", "o-1", "c-1"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    took = time.monotonic() - started

    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "could not enqueue" in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""  # no command id printed: nothing was enqueued
    assert took < BOUND + 10  # the send's bound plus starting Python and importing Celery
