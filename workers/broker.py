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

It also spends fewer round trips per message than kombu's (issue 16: kombu's handling
of each message was most of a batch worker's main process). kombu pops one message per
``BRPOP`` and records each as unacknowledged in a ``MULTI`` of its own. This channel,
once ``BRPOP`` has returned a message, records it in one script run (``FETCH_SCRIPT``)
that also pops as many more from the same list as the prefetch window has room for and
records them in the same step: a worker killed after it loses none of them. (The first
message keeps kombu's gap between ``BRPOP`` and its record, pinned by a strict xfail in
``tests/e2e/test_crash.py``: no blocking command both waits on several lists and leaves
the message on them.) And the acknowledgements of one turn of the worker's event loop
(a batch's, in batch mode) leave Redis in one ``MULTI`` (``QoS.ack``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import time
import uuid
from queue import Empty
from typing import Any

from kombu.transport import redis, virtual
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError

UNREADABLE_HEADER = "orders_unreadable"
MAX_ITEM_BYTES = 1024 * 1024
"""Bigger items are not parsed at all. A command's envelope is at most 64 KiB; its
message, with the body in base64 and Celery's headers, stays far below this."""
KEPT_BYTES = 64 * 1024
UNREADABLE_CONTENT_TYPE = "application/x-orders-unreadable"
MAX_FETCH = 100
"""Messages taken from a list in one round trip, at most (and never past the prefetch
window: ``worker --batch 50`` at ``--concurrency 2`` lets 200 be in hand)."""

log = logging.getLogger(__name__)

FETCH_SCRIPT = """
-- KEYS: the list, unacked_index, unacked. ARGV: now, how many more, MAX_ITEM_BYTES, the
-- message BRPOP returned. Records that message, and up to ARGV[2] more it pops, each one
-- kombu could carry, as unacknowledged (kombu's record: the delivery tag scored by
-- time, and [message, exchange, routing key] under the tag). Returns the items popped
-- and, beside the first message and each of them, its tag or false.
local items = {}
if tonumber(ARGV[2]) > 0 then items = redis.call('RPOP', KEYS[1], ARGV[2]) or {} end
local tags = {}
local function record(item)
  local ok, message = false, nil
  if #item <= tonumber(ARGV[3]) then ok, message = pcall(cjson.decode, item) end
  local properties = ok and type(message) == 'table' and message['properties']
  local tag = type(properties) == 'table' and properties['delivery_tag']
  local info = type(properties) == 'table' and properties['delivery_info']
  if type(tag) == 'string' and tag ~= '' and type(info) == 'table'
      and type(info['exchange']) == 'string' and type(info['routing_key']) == 'string' then
    redis.call('ZADD', KEYS[2], ARGV[1], tag)
    redis.call('HSET', KEYS[3], tag, '[' .. item .. ',' .. cjson.encode(info['exchange'])
      .. ',' .. cjson.encode(info['routing_key']) .. ']')
    return tag
  end
  return false
end
tags[1] = record(ARGV[4])
for i, item in ipairs(items) do tags[i + 1] = record(item) end
return {items, tags}
"""
_FETCH_SHA = hashlib.sha1(FETCH_SCRIPT.encode(), usedforsecurity=False).hexdigest()


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


def _fetch(client: Any, keys: list[str], args: list[Any]) -> Any:
    try:
        return client.evalsha(_FETCH_SHA, len(keys), *keys, *args)
    except NoScriptError:  # not loaded on this server yet: EVAL loads it
        return client.eval(FETCH_SCRIPT, len(keys), *keys, *args)


class QoS(redis.QoS):
    """kombu's, but for messages recorded as unacknowledged by ``FETCH_SCRIPT`` already,
    and for acknowledgements that leave Redis together."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[no-untyped-call]
        self.recorded: set[str] = set()
        """Delivery tags ``FETCH_SCRIPT`` recorded, not yet handed to the consumer."""
        self._acked: list[str] = []
        """Acknowledged, still in Redis's unacked hash until ``flush_acks``."""

    def append(self, message: Any, delivery_tag: str) -> None:
        if delivery_tag in self.recorded:
            self.recorded.discard(delivery_tag)
            # In memory only: the script has recorded it in Redis.
            virtual.QoS.append(self, message, delivery_tag)  # type: ignore[no-untyped-call]
        else:
            super().append(message, delivery_tag)  # type: ignore[no-untyped-call]

    def ack(self, delivery_tag: str) -> None:
        """On a worker's event loop, the acknowledgements of one turn of the loop (a
        batch's, which Celery hands the loop together) leave Redis in one ``MULTI`` at
        the start of the next; elsewhere, each at once, as kombu does."""
        call_soon = getattr(self.channel.connection, "call_soon", None)
        if call_soon is None:
            super().ack(delivery_tag)  # type: ignore[no-untyped-call]
            return
        virtual.QoS.ack(self, delivery_tag)  # type: ignore[no-untyped-call]
        self._acked.append(delivery_tag)
        if len(self._acked) == 1:
            call_soon(self.flush_acks)

    def flush_acks(self) -> None:
        """The acknowledged messages out of Redis's unacked hash. Should that fail, they
        stay there and are delivered again after the visibility timeout (the command log
        answers them), as when kombu's own acknowledgement fails."""
        tags, self._acked = self._acked, []
        if not tags:
            return
        try:
            self.forget(tags)
        except Exception:
            log.warning("could not acknowledge %d messages", len(tags), exc_info=True)

    def forget(self, tags: list[str]) -> None:
        """``tags`` out of Redis's unacked hash and index, in one ``MULTI``."""
        with self.pipe_or_acquire() as pipe:
            pipe.zrem(self.unacked_index_key, *tags)
            pipe.hdel(self.unacked_key, *tags)
            pipe.execute()

    def restore_unacked(self, client: Any = None) -> None:
        # Closing (a warm shutdown): what was acknowledged must not come back.
        self.flush_acks()
        super().restore_unacked(client)  # type: ignore[no-untyped-call]


class Channel(redis.Channel):
    QoS = QoS

    def _brpop_read(self, **options: Any) -> bool:
        # kombu's own, but for ``readable`` where it calls ``loads``, and for taking
        # more than one message (``_deliver_with_more``).
        try:
            try:
                dest__item = self.client.parse_response(self.client.connection, "BRPOP", **options)
            except self.connection_errors:
                # Disconnect, so that the next iteration reconnects.
                self.client.connection.disconnect()
                raise
            if not dest__item:
                raise Empty()
            key, item = dest__item
            key = key.decode() if isinstance(key, bytes) else key
            dest = key.rsplit(self.sep, 1)[0]
            self._queue_cycle.rotate(dest)
            self._deliver_with_more(key, dest, item)
            return True
        finally:
            self._in_poll = None  # type: ignore[assignment]
            flush = getattr(self, "_flush_brpop_reauth", None)  # kombu >= 5.6
            if flush is not None:
                flush()

    def _deliver_with_more(self, key: str, queue: str, first: bytes) -> None:
        """``first``, and as many more from the list ``key`` as the prefetch window has
        room for, recorded as unacknowledged (the more taken too) in one round trip
        (``FETCH_SCRIPT``): kombu's one ``MULTI`` for ``first`` alone."""
        qos: QoS = self.qos
        if self.global_keyprefix:  # the script's keys would need the prefix: kombu's way
            self.connection._deliver(readable(first, queue), queue)
            return
        room = qos.can_consume_max_estimate()  # type: ignore[no-untyped-call]
        more = max(0, min(MAX_FETCH, MAX_FETCH if room is None else room) - 1)
        with self.conn_or_acquire() as client:
            fetched, recorded = _fetch(
                client,
                [key, qos.unacked_index_key, qos.unacked_key],
                [time.time(), more, MAX_ITEM_BYTES, first],
            )
        messages: list[dict[str, Any]] = []
        stale: list[str] = []
        for item, tag in zip([first, *fetched], recorded, strict=True):
            message = readable(item, queue)
            if tag:
                tag = tag.decode()
                if message["properties"]["delivery_tag"] == tag:
                    qos.recorded.add(tag)
                else:  # a stand-in, with a tag of its own: QoS.append records it
                    stale.append(tag)
            messages.append(message)
        if stale:
            qos.forget(stale)
        try:
            for message in messages:
                self.connection._deliver(message, queue)
        finally:
            qos.recorded.clear()  # a message not handed over is still in Redis's hash

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
    call_soon: Any = None
    """The worker's event loop's ``call_soon``, once the transport is on it."""

    def register_with_event_loop(self, connection: Any, loop: Any) -> None:
        super().register_with_event_loop(connection, loop)  # type: ignore[no-untyped-call]
        self.call_soon = loop.call_soon
