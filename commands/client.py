"""The producer client: send a command, learn what became of it.

    client = CommandClient()                  # from ORDERS_* environment, or explicit URLs
    receipt = client.send(CreateOrder(order_id="order-001", customer_id="customer-123"))
    outcome = receipt.wait(timeout=10)        # Outcome(status="accepted", ...)
    outcome = receipt.wait(timeout=60, resend_every=5)   # through lost messages too
    client.outcome(receipt.command_id)        # from any process later; None while pending

Outcomes come back through Celery's result backend (Redis, with an expiry); the command
log in the database stays the durable record. The only outcome this client reports is
one a worker decided and recorded there: a task state it cannot read as an outcome
(revoked, crashed, lost with a Redis restart) is "no outcome yet", never ``failed``.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from celery import Celery
from celery.result import AsyncResult
from kombu.exceptions import KombuError
from redis.exceptions import RedisError

from commands.envelope import encode
from commands.messages import Command
from commands.outcome import Outcome
from commands.transport import (
    BROKER_URL_VARIABLE,
    COMMANDS_QUEUE,
    DEFAULT_BROKER_URL,
    DEFAULT_PUBLISH_TIMEOUT,
    HANDLE_COMMAND,
    PUBLISH_TIMEOUT_VARIABLE,
    REDIS_PASSWORD_VARIABLE,
    RESULT_BACKEND_VARIABLE,
    SENT_AT_HEADER,
    BrokerConfigError,
    Endpoints,
    checked_publish_timeout,
    common_celery_config,
    redacted,
    socket_timeout_for,
    with_redis_password,
)

# What a broker or result backend that cannot be reached raises, through kombu, redis-py
# or the socket underneath them.
_UNREACHABLE = (KombuError, OSError, RedisError)
_FIRST_POLL = 0.005
_SLOWEST_POLL = 0.05
MAX_BACKOFF = 32  # the longest wait between resends: 32 x resend_every


class BrokerUnavailable(ConnectionError):
    """The broker did not confirm the command within the publish timeout.

    It may or may not have been enqueued (a broker that stalls can take the message and
    never answer): sending it again with the same ``command_id`` is safe, the command
    log makes sure it is applied once.
    """

    def __init__(self, command_id: str, broker: str, timeout: float, cause: BaseException) -> None:
        reason = " ".join(str(cause).split())  # kombu's messages span several lines
        super().__init__(
            f"the broker {broker} did not take command {command_id} within {timeout:g} s "
            f"({type(cause).__name__}: {reason}); it may still have been enqueued: "
            "send it again with the same command_id"
        )
        self.command_id = command_id


class OutcomeTimeout(TimeoutError):
    """No outcome within the wait. The command may still be handled later, or its
    message may be lost: sending it again with the same ``command_id`` is safe."""

    def __init__(self, command_id: str, timeout: float) -> None:
        super().__init__(f"no outcome for command {command_id} within {timeout:g} s")
        self.command_id = command_id


@dataclass(frozen=True)
class Receipt:
    command_id: str
    client: CommandClient
    command: Command | None = field(default=None, repr=False, compare=False)

    def wait(self, timeout: float = 30.0, *, resend_every: float | None = None) -> Outcome:
        """The command's outcome; with ``resend_every``, the same command is sent again
        every that many seconds until one comes (see ``CommandClient.wait``)."""
        return self.client.wait(
            self.command_id, timeout=timeout, resend_every=resend_every, command=self.command
        )

    def outcome(self) -> Outcome | None:
        return self.client.outcome(self.command_id)


class CommandClient:
    def __init__(
        self,
        broker_url: str | None = None,
        result_backend: str | None = None,
        *,
        publish_timeout: float | None = None,
        result_expires: int = 86_400,
        app: Celery | None = None,
    ) -> None:
        """Explicit arguments win; what is not given comes from ORDERS_BROKER_URL,
        ORDERS_RESULT_BACKEND and ORDERS_PUBLISH_TIMEOUT.

        ``app`` lets a process that already runs a worker (the embedded demo) share it;
        without one, the broker must be one that workers in other processes can reach.
        """
        # Only what was not given comes from the environment, so a bad variable cannot
        # stop a client whose settings are explicit.
        # ORDERS_REDIS_PASSWORD goes into those (percent-encoded), as the workers do.
        password = os.environ.get(REDIS_PASSWORD_VARIABLE) or None
        from_env = os.environ.get(RESULT_BACKEND_VARIABLE)
        endpoints = Endpoints(
            broker_url=broker_url
            or with_redis_password(
                os.environ.get(BROKER_URL_VARIABLE) or DEFAULT_BROKER_URL, password
            ),
            result_backend=result_backend
            or (with_redis_password(from_env, password) if from_env else None),
        )
        if app is None and endpoints.in_process:
            raise BrokerConfigError(
                f"{BROKER_URL_VARIABLE} is not set: a command would be enqueued in this "
                "process's memory, where no worker can take it, and die with the process. "
                "Set it to the Redis broker the workers read (e.g. redis://localhost:6379/0)"
            )
        if publish_timeout is None:
            raw = os.environ.get(PUBLISH_TIMEOUT_VARIABLE) or ""
            publish_timeout = (
                checked_publish_timeout(PUBLISH_TIMEOUT_VARIABLE, raw)
                if raw
                else DEFAULT_PUBLISH_TIMEOUT
            )
        else:
            publish_timeout = checked_publish_timeout("publish_timeout", str(publish_timeout))
        self.publish_timeout = publish_timeout
        self._broker = endpoints.broker_url
        if app is None:
            app = Celery("orders-producer", set_as_current=False)
            app.conf.update(
                common_celery_config(
                    endpoints, result_expires=result_expires, publish_timeout=publish_timeout
                )
            )
        self._app = app

    # -- sending ---------------------------------------------------------------------

    def send(self, command: Command) -> Receipt:
        """Enqueue ``command``; raises ``BrokerUnavailable`` if the broker does not take
        it within the publish timeout."""
        envelope = encode(command)
        self._publish(command.command_id, envelope, self.publish_timeout)
        return Receipt(command.command_id, self, command)

    def _publish(self, command_id: str, envelope: dict[str, Any], budget: float) -> None:
        """One message, task id = command id, on the commands queue, tried until it is
        taken or ``budget`` seconds are spent.

        Published directly, not through ``Celery.send_task``: that first subscribes to
        the task's result on the result backend, with retries of its own, and only then
        publishes, so a stalled Redis held it past any bound. Outcomes are read by
        polling (``wait``), which needs no subscription made in advance.
        """
        started = time.monotonic()
        deadline = started + budget
        # A try that starts must be able to end within the budget: connecting and one
        # command each wait at most a socket timeout.
        one_try = 2 * socket_timeout_for(self.publish_timeout)
        pause = 0.1
        amqp = self._app.amqp
        message = amqp.create_task_message(command_id, HANDLE_COMMAND, [envelope], {})
        # The send time lets workers measure enqueue-to-outcome (a metric, never a rule).
        headers = {SENT_AT_HEADER: time.time()}
        while True:
            try:
                with self._app.producer_or_acquire() as producer:
                    amqp.send_task_message(
                        producer,
                        HANDLE_COMMAND,
                        message,
                        queue=COMMANDS_QUEUE,
                        retry=False,
                        headers=headers,
                    )
                return
            except _UNREACHABLE as down:
                last: BaseException = down
            left = deadline - time.monotonic()
            if left < pause + one_try:
                raise BrokerUnavailable(command_id, redacted(self._broker), budget, last) from last
            time.sleep(pause)
            pause = min(pause * 2, 1.0)

    # -- outcomes ----------------------------------------------------------------------

    def outcome(self, command_id: str) -> Outcome | None:
        """The command's outcome, or None: pending, unknown, expired, or in a state that
        is not an outcome (a task revoked or crashed before it recorded one). None means
        "not decided as far as this client can tell"; it never means failed."""
        backend = self._app.backend
        # Not cached: Celery would keep a REVOKED or FAILURE state as final, while a
        # redelivery of the same command can still store its outcome over it.
        meta = backend.get_task_meta(command_id, cache=False)
        if meta.get("status") != "SUCCESS" or not isinstance(meta.get("result"), dict):
            return None
        try:
            return Outcome.from_dict(meta["result"])
        except (KeyError, TypeError, ValueError):
            return None  # not something a worker of this system stored

    def wait(
        self,
        command_id: str,
        timeout: float = 30.0,
        *,
        resend_every: float | None = None,
        command: Command | None = None,
    ) -> Outcome:
        """Until the command's outcome is stored, or ``OutcomeTimeout`` after ``timeout``.

        With ``resend_every`` (and the ``command``), the same message is sent again when
        that many seconds pass without an outcome, then after twice as long, and so on
        (up to 32 times as long): a command lost with a broker restart, a worker killed
        at the wrong instant, or an outcome lost with the result store still gets exactly
        one outcome, as the command log answers a second delivery with the first one's;
        and a command only waiting its turn behind a backlog is not sent over and over.
        """
        if resend_every is not None:
            if command is None or command.command_id != command_id:
                raise ValueError("resend_every needs the command itself (use Receipt.wait)")
            if not (math.isfinite(resend_every) and resend_every > 0):
                raise ValueError(f"resend_every must be a positive number, got {resend_every}")
        envelope = encode(command) if command is not None else None
        now = time.monotonic()
        deadline = now + timeout
        resend_at = now + resend_every if resend_every else math.inf
        resends = 0
        poll = _FIRST_POLL
        while True:
            try:
                found = self.outcome(command_id)
            except _UNREACHABLE:
                found = None  # the result store is down or restarting: ask again
            if found is not None:
                return found
            now = time.monotonic()
            if now >= deadline:
                raise OutcomeTimeout(command_id, timeout)
            if now >= resend_at and envelope is not None and resend_every is not None:
                try:
                    budget = min(self.publish_timeout, max(deadline - now, 0.5))
                    self._publish(command_id, envelope, budget)
                except BrokerUnavailable:
                    pass  # the broker is down too: the next round tries again
                # Each resend waits twice as long as the one before: a command still
                # queued behind a backlog must not be sent again and again, adding to it.
                resends += 1
                resend_at = time.monotonic() + resend_every * min(2**resends, MAX_BACKOFF)
                continue
            time.sleep(max(0.0, min(poll, deadline - now, resend_at - now)))
            poll = min(poll * 2, _SLOWEST_POLL)

    def completed_at(self, command_id: str) -> datetime | None:
        """When the worker published the command's outcome (for latency measurements)."""
        done = AsyncResult(command_id, app=self._app).date_done
        if isinstance(done, str):
            done = datetime.fromisoformat(done)
        if isinstance(done, datetime) and done.tzinfo is None:
            done = done.replace(tzinfo=UTC)  # Celery records UTC
        return done if isinstance(done, datetime) else None

    def close(self) -> None:
        self._app.close()
