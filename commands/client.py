"""The producer client: send a command, learn what became of it.

    client = CommandClient()                  # from ORDERS_* environment, or explicit URLs
    receipt = client.send(CreateOrder(order_id="order-001", customer_id="customer-123"))
    outcome = receipt.wait(timeout=10)        # Outcome(status="accepted", ...)
    client.outcome(receipt.command_id)        # from any process later; None while pending

Outcomes come back through Celery's result backend (Redis, with an expiry); the command
log in the database stays the durable record.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from celery import Celery
from celery.exceptions import TimeoutError as CeleryTimeout
from celery.result import AsyncResult
from kombu.exceptions import OperationalError
from redis.exceptions import RedisError

from commands.envelope import encode
from commands.messages import Command
from commands.outcome import Outcome
from commands.transport import (
    BROKER_URL_VARIABLE,
    COMMANDS_QUEUE,
    DEFAULT_BROKER_URL,
    HANDLE_COMMAND,
    RESULT_BACKEND_VARIABLE,
    Endpoints,
    common_celery_config,
)

_PENDING_STATES = frozenset({"PENDING", "RECEIVED", "STARTED", "RETRY"})


class BrokerUnavailable(ConnectionError):
    """The broker could not take the command within the bounded retry time.

    The command was not enqueued; sending it again with the same ``command_id`` is safe.
    """

    def __init__(self, command_id: str, broker: str, cause: BaseException) -> None:
        reason = " ".join(str(cause).split())  # Celery's messages span several lines
        super().__init__(f"could not enqueue command {command_id} on {broker}: {reason}")
        self.command_id = command_id


class OutcomeTimeout(TimeoutError):
    """No outcome within the wait; the command may still be handled later."""

    def __init__(self, command_id: str, timeout: float) -> None:
        super().__init__(f"no outcome for command {command_id} within {timeout} s")
        self.command_id = command_id


@dataclass(frozen=True)
class Receipt:
    command_id: str
    client: CommandClient

    def wait(self, timeout: float = 30.0) -> Outcome:
        return self.client.wait(self.command_id, timeout=timeout)

    def outcome(self) -> Outcome | None:
        return self.client.outcome(self.command_id)


class CommandClient:
    def __init__(
        self,
        broker_url: str | None = None,
        result_backend: str | None = None,
        *,
        publish_timeout: float = 10.0,
        result_expires: int = 86_400,
        app: Celery | None = None,
    ) -> None:
        """Explicit URLs win; the rest comes from ORDERS_BROKER_URL / ORDERS_RESULT_BACKEND.

        ``app`` lets a process that already runs a worker (the embedded demo) share it.
        """
        # Only what was not given comes from the environment, so a bad variable cannot
        # stop a client whose URLs are explicit.
        endpoints = Endpoints(
            broker_url=broker_url or os.environ.get(BROKER_URL_VARIABLE) or DEFAULT_BROKER_URL,
            result_backend=result_backend or os.environ.get(RESULT_BACKEND_VARIABLE) or None,
        )
        self._broker = endpoints.broker_url
        if app is None:
            app = Celery("orders-producer", set_as_current=False)
            app.conf.update(
                common_celery_config(
                    endpoints, result_expires=result_expires, publish_timeout=publish_timeout
                )
            )
        self._app = app

    def send(self, command: Command) -> Receipt:
        """Enqueue ``command``; raises ``BrokerUnavailable`` if the broker does not take it."""
        envelope = encode(command)
        try:
            self._app.send_task(
                HANDLE_COMMAND,
                args=[envelope],
                task_id=command.command_id,
                queue=COMMANDS_QUEUE,
            )
        except (OperationalError, OSError, RedisError, RuntimeError) as down:
            # RuntimeError: Celery's way of saying the result backend stayed unreachable
            # while it subscribed to this command's outcome, before publishing.
            raise BrokerUnavailable(command.command_id, _safe(self._broker), down) from down
        return Receipt(command.command_id, self)

    def outcome(self, command_id: str) -> Outcome | None:
        """The command's outcome, or None while it is pending (or unknown, or expired)."""
        result = AsyncResult(command_id, app=self._app)
        state = result.state
        if state in _PENDING_STATES:
            return None
        return _outcome_of(command_id, state, result.result)

    def completed_at(self, command_id: str) -> datetime | None:
        """When the worker published the command's outcome (for latency measurements)."""
        done = AsyncResult(command_id, app=self._app).date_done
        if isinstance(done, str):
            done = datetime.fromisoformat(done)
        if isinstance(done, datetime) and done.tzinfo is None:
            done = done.replace(tzinfo=UTC)  # Celery records UTC
        return done if isinstance(done, datetime) else None

    def wait(self, command_id: str, timeout: float = 30.0) -> Outcome:
        deadline = time.monotonic() + timeout
        result = AsyncResult(command_id, app=self._app)
        try:
            value = result.get(
                timeout=timeout, propagate=False, interval=0.05, disable_sync_subtasks=False
            )
        except CeleryTimeout:
            raise OutcomeTimeout(command_id, timeout) from None
        # A task retried after an outage reports RETRY in between; keep waiting for the end.
        while result.state in _PENDING_STATES:
            if time.monotonic() >= deadline:
                raise OutcomeTimeout(command_id, timeout)
            time.sleep(0.05)
            value = result.result
        return _outcome_of(command_id, result.state, value)

    def close(self) -> None:
        self._app.close()


def _outcome_of(command_id: str, state: str, value: Any) -> Outcome:
    if state == "SUCCESS" and isinstance(value, dict):
        return Outcome.from_dict(value)
    # The task itself crashed (a bug, or it was killed past its retries).
    return Outcome(
        status="failed",
        command_id=command_id,
        error=type(value).__name__ if isinstance(value, BaseException) else state,
        message=str(value),
    )


def _safe(url: str) -> str:
    """The URL without its password, for messages."""
    head, sep, tail = url.rpartition("@")
    return f"{head.split('://')[0]}://***@{tail}" if sep else url
