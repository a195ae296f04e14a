"""Servers restarting under a burst of commands: every command ends with exactly one
outcome, the command log's, for a producer that resends (``resend_every``).

Redis without persistence loses, on restart, every queued command, every outcome not
yet read and the record of unacknowledged messages (1,640 of 5,952 commands in one run
before ``resend_every``); with its append-only file it loses at most what was in
flight. A PostgreSQL stopped in the middle (``immediate``: every backend killed, as in
a crash) makes commands wait, and those past their retries are recorded as failed when
it is back. In each case the producer resends what has no outcome, and the command
log answers a second delivery with the first one's outcome.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kombu import Connection, Queue
from kombu.common import ignore_errors
from sqlalchemy import Engine

from commands import CreateOrder
from commands.client import CommandClient
from tests.support.burst import (
    ORDERS,
    CountingClient,
    Producer,
    assert_outcomes_match_the_log,
    burst_of_commands,
    restart_after,
)
from tests.support.servers import PostgresServer, RedisServer
from tests.support.workers import WorkerProcess
from workers.broker import Transport


@pytest.fixture
def private_redis(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis", appendonly=request.param == "aof").start()
    yield server
    server.stop()


@pytest.mark.timeout(600)
@pytest.mark.parametrize("private_redis", ["aof", "no persistence"], indirect=True)
def test_a_redis_restart_in_a_burst_leaves_every_command_one_outcome_the_logs(
    start_worker: Callable[..., WorkerProcess],
    pg: Engine,
    private_redis: RedisServer,
) -> None:
    url = private_redis.url
    worker = start_worker({"ORDERS_BROKER_URL": url, "ORDERS_RESULT_BACKEND": url})
    client = CountingClient(url, url, publish_timeout=2)
    commands = burst_of_commands()
    producer = Producer(client, commands)

    def restart() -> None:
        private_redis.kill()
        time.sleep(1.0)
        private_redis.start()

    restarter = restart_after(producer.first_part_sent, restart)
    try:
        outcomes = producer.run(resend_every=2)
    finally:
        restarter.join()
        client.close()

    try:
        counts = assert_outcomes_match_the_log(pg, commands, outcomes)  # type: ignore[arg-type]
    except AssertionError as failed:
        raise AssertionError(f"{failed}\nworker log:\n{worker.log(400)}") from None
    assert counts["accepted"] >= ORDERS, counts
    assert set(counts) <= {"accepted", "rejected"}, counts  # nothing failed
    if not private_redis.appendonly:
        # The restart did lose commands or outcomes, and resending brought them back.
        assert client.published > len(commands), client.published
    assert worker.process.poll() is None, "the worker died:\n" + worker.log()


def test_a_postgres_immediate_stop_in_a_burst_leaves_every_command_one_outcome_the_logs(
    start_worker: Callable[..., WorkerProcess],
    client: CommandClient,
    private_postgres: tuple[PostgresServer, str, Engine],
) -> None:
    server, url, engine = private_postgres
    # Retries short enough that some commands run out of them during the outage: those
    # are recorded as failed once the database is back, and the rest are decided.
    worker = start_worker(
        {"ORDERS_DATABASE_URL": url, "ORDERS_DB_RETRIES": "3", "ORDERS_DB_RETRY_DELAY": "0.3"}
    )
    commands = burst_of_commands(count=2_000, orders=200)
    producer = Producer(client, commands)

    def crash() -> None:
        server.stop("immediate")
        time.sleep(4.0)
        server.start()

    restarter = restart_after(producer.first_part_sent, crash)
    try:
        outcomes = producer.run(resend_every=2)
    finally:
        restarter.join()

    engine.dispose()  # its connections died with the server
    counts = assert_outcomes_match_the_log(engine, commands, outcomes)  # type: ignore[arg-type]
    assert counts["accepted"] >= 200, counts
    assert "DatabaseUnavailable" in worker.log(lines=None) or counts["failed"] == 0
    assert worker.process.poll() is None, "the worker died:\n" + worker.log()


@pytest.mark.parametrize("state", ["REVOKED", "FAILURE"])
def test_a_result_store_saying_revoked_or_failure_is_never_reported_as_failed(
    start_worker: Callable[..., WorkerProcess],
    client: CommandClient,
    pg: Engine,
    state: str,
) -> None:
    # Seen after broker restarts: a task terminated on connection loss after its events
    # committed left REVOKED in the result store, and the client said "failed": a
    # producer following the README then added the item twice.
    start_worker()
    command = CreateOrder("order-revoked", "customer-1")
    accepted = client.send(command).wait(timeout=30)
    assert accepted.accepted
    # As if the task had been terminated after its commit, before it stored its result.
    backend = client._app.backend
    backend.forget(command.command_id)
    if state == "REVOKED":
        backend.mark_as_revoked(command.command_id, reason="terminated")
    else:
        backend.mark_as_failure(command.command_id, RuntimeError("worker lost"))

    assert client.outcome(command.command_id) is None  # not an outcome: never "failed"
    # A producer that resends gets the command log's answer, and nothing is appended.
    again = client.wait(command.command_id, timeout=30, resend_every=0.5, command=command)

    assert again == accepted
    stored = assert_outcomes_match_the_log(pg, [command], {command.command_id: again})
    assert stored == {"accepted": 1}


@pytest.mark.parametrize("private_redis", ["aof"], indirect=True)
def test_a_broker_lost_with_messages_in_hand_closes_as_a_connection_error(
    private_redis: RedisServer,
) -> None:
    """What Celery 5.7's consumer does when Redis goes away with messages delivered and
    not yet acknowledged: collect the connection (which can forget its URL), then close
    it, which closes the channel, which tries to put those messages back. kombu's channel
    died there with an AttributeError that ended the worker (seen in the burst test
    above); it must be a connection error, which the consumer ignores before it
    reconnects. The messages stay in the unacked hash for the visibility timeout."""
    connection = Connection(private_redis.url, transport=Transport)
    channel = connection.default_channel
    queue = Queue("restore-probe", routing_key="restore-probe")
    with connection.Producer() as producer:
        producer.publish({"n": 1}, routing_key="restore-probe", declare=[queue])
    message = channel.basic_get("restore-probe", no_ack=False)
    assert message is not None  # delivered, not acknowledged: the channel must restore it

    private_redis.kill()
    # collect() lets go of the transport's URL even when closing the channel timed out
    # (its socket.timeout is swallowed), leaving the channel open with messages in hand.
    connection.transport.client = None
    ignore_errors(connection, connection.close)  # raised AttributeError before the fix

    private_redis.start()
    assert private_redis.client().hlen("unacked") == 1
