"""kombu's Redis transport, made to survive whatever another program puts on a queue.

A queue is a plain Redis list, and anything with access to Redis can push to it. kombu
parses each item as its own JSON message format and gives up inside its event loop on
anything else: ``LPUSH orders.commands 'not json'`` ended every worker that popped it
(``Unrecoverable error: JSONDecodeError``, exit code 0), and a JSON object without the
message properties broke the connection and vanished.

This channel looks at each item before kombu does. An item that is not a message kombu
can carry (too big, not UTF-8, not JSON, not an object, missing or ill-typed
properties) is delivered as a well-formed stand-in instead: a message whose body is the
item's raw bytes (the first ``KEPT_BYTES`` of them) and whose headers say what was
wrong. It is acknowledged like any other message, so it survives a worker crash, and
the consumer (``workers.consumer``) dead-letters it with its reason.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from queue import Empty
from typing import Any

from kombu.transport import redis
from redis.exceptions import ConnectionError as RedisConnectionError

UNREADABLE_HEADER = "orders_unreadable"
MAX_ITEM_BYTES = 1024 * 1024
"""Bigger items are not parsed at all. A command's envelope is at most 64 KiB; its
message, with the body in base64 and Celery's headers, stays far below this."""
KEPT_BYTES = 64 * 1024
UNREADABLE_CONTENT_TYPE = "application/x-orders-unreadable"


def readable(item: bytes, queue: str) -> dict[str, Any]:
    """The message ``item`` holds, or a stand-in that carries it to the dead letters."""
    if len(item) > MAX_ITEM_BYTES:
        return stand_in(item, queue, f"is {len(item)} bytes, above {MAX_ITEM_BYTES}")
    try:
        payload = json.loads(item.decode("utf-8"))
    except UnicodeDecodeError as error:
        return stand_in(item, queue, f"is not UTF-8 text: {error}")
    except ValueError as error:
        return stand_in(item, queue, f"is not JSON: {error}")
    problem = _problem(payload)
    return payload if problem is None else stand_in(item, queue, problem)


def stand_in(item: bytes, queue: str, problem: str) -> dict[str, Any]:
    """A message kombu can deliver, acknowledge and restore, holding ``item`` as is."""
    return {
        "body": base64.b64encode(item[:KEPT_BYTES]).decode("ascii"),
        "content-type": UNREADABLE_CONTENT_TYPE,
        "content-encoding": "binary",
        "headers": {UNREADABLE_HEADER: f"not a message: the item {problem}"[:1000]},
        "properties": {
            "delivery_tag": str(uuid.uuid4()),
            "body_encoding": "base64",
            # Where a restore after a crash puts it back: the queue it came from.
            "delivery_info": {"exchange": queue, "routing_key": queue},
            "priority": 0,
        },
    }


def _problem(payload: Any) -> str | None:
    """What keeps kombu from delivering ``payload``, or None when nothing does.

    Only what kombu itself reads before handing the message over is checked here;
    whether it is a task, and a valid command, is Celery's and the worker's business.
    """
    if not isinstance(payload, dict):
        return f"is a JSON {_kind(payload)}, not an object"
    properties = payload.get("properties")
    if not isinstance(properties, dict):
        return "has no 'properties' object"
    tag = properties.get("delivery_tag")
    if not isinstance(tag, str) or not tag:
        return "has no 'properties.delivery_tag' string"
    info = properties.get("delivery_info")
    if not isinstance(info, dict):
        return "has no 'properties.delivery_info' object"
    for key in ("exchange", "routing_key"):
        if not isinstance(info.get(key), str):
            return f"has no 'properties.delivery_info.{key}' string"
    priority = properties.get("priority")
    if priority is not None and (isinstance(priority, bool) or not isinstance(priority, int)):
        return "has a 'properties.priority' that is not an integer"
    for key in ("headers",):
        if payload.get(key) is not None and not isinstance(payload[key], dict):
            return f"has a '{key}' that is not an object"
    for key in ("content-type", "content-encoding"):
        if payload.get(key) is not None and not isinstance(payload[key], str):
            return f"has a '{key}' that is not a string"
    body = payload.get("body")
    if body is not None and not isinstance(body, str):
        return "has a 'body' that is not a string"
    encoding = properties.get("body_encoding")
    if encoding not in (None, "base64"):
        return f"has an unknown 'properties.body_encoding' {str(encoding)[:40]!r}"
    if encoding == "base64" and body:
        try:
            binascii.a2b_base64(body, strict_mode=True)
        except (binascii.Error, ValueError) as error:
            return f"has a 'body' that is not base64: {error}"
    return None


def _kind(value: Any) -> str:
    return {str: "string", list: "array", bool: "boolean", type(None): "null"}.get(
        type(value), "number"
    )


class Channel(redis.Channel):
    def _brpop_read(self, **options: Any) -> bool:
        # kombu's own, but for ``readable`` where it calls ``loads``.
        try:
            try:
                dest__item = self.client.parse_response(self.client.connection, "BRPOP", **options)
            except self.connection_errors:
                # Disconnect, so that the next iteration reconnects.
                self.client.connection.disconnect()
                raise
            if not dest__item:
                raise Empty()
            dest, item = dest__item
            dest = (dest.decode() if isinstance(dest, bytes) else dest).rsplit(self.sep, 1)[0]
            self._queue_cycle.rotate(dest)
            self.connection._deliver(readable(item, dest), dest)
            return True
        finally:
            self._in_poll = None  # type: ignore[assignment]
            flush = getattr(self, "_flush_brpop_reauth", None)  # kombu >= 5.6
            if flush is not None:
                flush()

    def _get(self, queue: str, timeout: Any = None) -> Any:
        channel: Any = self  # kombu's methods here carry no types
        with self.conn_or_acquire() as client:
            for priority in self.priority_steps:
                item = client.rpop(channel._q_for_pri(queue, priority))
                if item:
                    self._queues_expire(client, queue)
                    return readable(item, queue)
            self._queues_expire(client, queue)
            raise Empty()

    def _connparams(self, asynchronous: bool = False) -> Any:
        # Celery 5.7, on losing the broker, lets go of the connection (which forgets its
        # URL) and then closes this channel, which reconnects to put its unacknowledged
        # messages back: kombu's version dies on the missing URL with an AttributeError
        # the worker does not survive ("Unrecoverable error"). Said as a connection error,
        # the worker reconnects; the messages are still in Redis's unacked hash and come
        # back after the visibility timeout.
        if self.connection.client is None:
            raise RedisConnectionError("the broker connection is closed")
        return super()._connparams(asynchronous=asynchronous)  # type: ignore[no-untyped-call]

    def _queues_expire(self, client: Any, queue: str) -> None:
        refresh = getattr(self, "_maybe_update_queues_expire", None)  # kombu >= 5.5
        if refresh is not None:
            refresh(client, queue)


class Transport(redis.Transport):
    Channel = Channel
