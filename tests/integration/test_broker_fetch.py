"""The Redis transport's batched fetch and acknowledgement (workers/broker.py), against a
real Redis: one read takes as many messages as the prefetch window has room for, in
order, each recorded as unacknowledged before anyone sees it; what kombu could not carry
still comes as a stand-in; a process killed after the fetch loses nothing; a batch's
acknowledgements of one turn of a worker's event loop leave Redis together."""

from __future__ import annotations

import base64
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from kombu import Connection, Consumer, Queue

from workers.broker import UNREADABLE_HEADER, Transport

BURST = 30


@pytest.fixture
def queue_name() -> str:
    return f"fetch-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def connection(redis_url: str, broker: redis.Redis) -> Iterator[Connection]:
    with Connection(
        redis_url, transport=Transport, transport_options={"visibility_timeout": 1}
    ) as connection:
        yield connection


def publish(connection: Connection, queue: Queue, count: int, start: int = 0) -> None:
    with connection.Producer() as producer:
        for n in range(start, start + count):
            producer.publish({"n": n}, routing_key=queue.routing_key, declare=[queue])


def one_read(connection: Connection, queue: Queue, prefetch: int) -> list[Any]:
    """The messages a single ``drain_events`` hands over (kombu alone: one)."""
    delivered: list[Any] = []
    channel = connection.default_channel
    channel.basic_qos(0, prefetch, False)
    with Consumer(channel, queues=[queue], on_message=delivered.append, accept=["json"]):
        connection.drain_events(timeout=5)
    return delivered


def unacked_tags(broker: redis.Redis) -> set[str]:
    return {tag.decode() for tag in broker.hkeys("unacked")}


def test_one_read_takes_a_burst_in_order_each_recorded_before_it_is_delivered(
    connection: Connection, broker: redis.Redis, queue_name: str
) -> None:
    queue = Queue(queue_name, routing_key=queue_name)
    publish(connection, queue, BURST)
    recorded_before: list[bool] = []
    delivered: list[Any] = []

    def seen(_body: Any, message: Any) -> None:
        recorded_before.append(broker.hexists("unacked", message.delivery_tag))
        delivered.append(message)

    connection.default_channel.basic_qos(0, 100, False)
    with Consumer(connection.default_channel, queues=[queue], callbacks=[seen], accept=["json"]):
        connection.drain_events(timeout=5)

    assert [m.decode()["n"] for m in delivered] == list(range(BURST))
    assert all(recorded_before)
    assert unacked_tags(broker) == {m.delivery_tag for m in delivered}
    # kombu's own record, which its restore reads: [message, exchange, routing key].
    message, exchange, routing_key = json.loads(broker.hget("unacked", delivered[5].delivery_tag))
    assert message["properties"]["delivery_tag"] == delivered[5].delivery_tag
    assert (exchange, routing_key) == (
        delivered[5].delivery_info["exchange"],
        delivered[5].delivery_info["routing_key"],
    )


def test_a_read_never_takes_more_than_the_prefetch_window(
    connection: Connection, broker: redis.Redis, queue_name: str
) -> None:
    queue = Queue(queue_name, routing_key=queue_name)
    publish(connection, queue, BURST)

    delivered = one_read(connection, queue, prefetch=5)

    assert [m.decode()["n"] for m in delivered] == [0, 1, 2, 3, 4]
    assert broker.llen(queue_name) == BURST - 5
    assert len(unacked_tags(broker)) == 5


def test_what_kombu_cannot_carry_still_comes_as_a_stand_in_and_leaves_no_stale_record(
    connection: Connection, broker: redis.Redis, queue_name: str
) -> None:
    queue = Queue(queue_name, routing_key=queue_name)
    publish(connection, queue, 2)
    broker.lpush(queue_name, b"not json")
    broker.lpush(queue_name, json.dumps({"body": "e30="}))  # no properties
    # Every property the script checks is right, but the body is not base64: the script
    # records it under its own tag, the channel makes a stand-in of it (new tag).
    bad_body = {
        "body": "%%% not base64",
        "content-type": "application/json",
        "content-encoding": "utf-8",
        "headers": {},
        "properties": {
            "delivery_tag": "tag-of-a-bad-body",
            "body_encoding": "base64",
            "delivery_info": {"exchange": queue_name, "routing_key": queue_name},
            "priority": 0,
        },
    }
    broker.lpush(queue_name, json.dumps(bad_body))
    publish(connection, queue, 2, start=2)

    delivered = one_read(connection, queue, prefetch=100)

    unreadable = [m for m in delivered if UNREADABLE_HEADER in (m.headers or {})]
    readable = [m.decode()["n"] for m in delivered if m not in unreadable]
    assert readable == [0, 1, 2, 3]
    assert len(unreadable) == 3
    assert unreadable[0].body == b"not json"
    assert unacked_tags(broker) == {m.delivery_tag for m in delivered}
    assert "tag-of-a-bad-body" not in unacked_tags(broker)


def test_on_an_event_loop_the_acknowledgements_of_a_turn_leave_redis_together(
    connection: Connection, broker: redis.Redis, queue_name: str
) -> None:
    queue = Queue(queue_name, routing_key=queue_name)
    publish(connection, queue, 10)
    delivered = one_read(connection, queue, prefetch=100)
    qos = connection.default_channel.qos

    delivered[0].ack()  # no event loop: at once, as kombu does
    assert len(unacked_tags(broker)) == 9

    next_turn: list[Callable[[], None]] = []
    connection.transport.call_soon = next_turn.append  # what a worker's loop gives it
    for message in delivered[1:8]:
        message.ack()
    assert len(unacked_tags(broker)) == 9  # not yet: the next turn of the loop
    assert qos.can_consume()  # the prefetch window has room at once
    assert len(next_turn) == 1  # one flush for the turn's seven

    forgotten: list[list[str]] = []
    forget = qos.forget
    qos.forget = lambda tags: (forgotten.append(list(tags)), forget(tags))
    next_turn.pop()()
    assert forgotten == [[m.delivery_tag for m in delivered[1:8]]]  # one MULTI for seven
    assert unacked_tags(broker) == {m.delivery_tag for m in delivered[8:]}


def test_a_closing_channel_sends_the_acknowledgements_still_pending(
    redis_url: str, broker: redis.Redis, queue_name: str
) -> None:
    queue = Queue(queue_name, routing_key=queue_name)
    with Connection(redis_url, transport=Transport) as connection:
        publish(connection, queue, 5)
        delivered = one_read(connection, queue, prefetch=100)
        connection.transport.call_soon = lambda _: None  # the loop stopped: never runs
        for message in delivered[:3]:
            message.ack()
    # Closed: the acknowledged are gone, the rest put back on the queue.
    assert broker.hlen("unacked") == 0
    assert broker.llen(queue_name) == 2


def test_a_consumer_killed_right_after_a_fetch_loses_nothing(
    redis_url: str, broker: redis.Redis, queue_name: str
) -> None:
    """The process dies handling the first message of a burst it has taken: every
    message of it is in the unacked hash, and a restore puts them all back."""
    queue = Queue(queue_name, routing_key=queue_name)
    with Connection(redis_url, transport=Transport) as producer_side:
        publish(producer_side, queue, BURST)

    child = os.fork()
    if child == 0:  # pragma: no cover - the child dies in its callback
        try:
            with Connection(redis_url, transport=Transport) as connection:
                channel = connection.default_channel
                channel.basic_qos(0, 100, False)
                with Consumer(
                    channel, queues=[queue], callbacks=[lambda *_: os._exit(0)], accept=["json"]
                ):
                    connection.drain_events(timeout=5)
        finally:
            os._exit(1)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the consumer did not get a message"
    assert broker.llen(queue_name) == 0
    assert broker.hlen("unacked") == BURST

    time.sleep(1.2)
    with Connection(
        redis_url, transport=Transport, transport_options={"visibility_timeout": 1}
    ) as connection:
        connection.default_channel.qos.restore_visible(num=BURST * 2)
    numbers = sorted(
        json.loads(base64.b64decode(json.loads(item)["body"]))["n"]
        for item in broker.lrange(queue_name, 0, -1)
    )
    assert numbers == list(range(BURST))
    assert broker.hlen("unacked") == 0
