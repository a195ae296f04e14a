"""Upcasters: turn stored payloads of older schema versions into the current shape.

Stored events are never rewritten. When the shape of an event changes, bump its class's
``schema_version`` and register one upcaster from the previous version here; loading
then chains them: v1 -> v2 -> ... -> current.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any, NamedTuple

from domain.errors import MalformedEvent, UnknownEventType, UnknownSchemaVersion
from domain.events import EVENT_TYPES, Event, EventMetadata

Payload = dict[str, Any]
Upcaster = Callable[[Payload], Payload]

UPCASTERS: dict[tuple[str, int], Upcaster] = {}


def upcaster(event_type: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
    """Register ``fn`` as the step from ``from_version`` to ``from_version + 1``."""

    def register(fn: Upcaster) -> Upcaster:
        UPCASTERS[(event_type, from_version)] = fn
        return fn

    return register


@upcaster("ItemAdded", from_version=1)
def _item_added_float_price(data: Payload) -> Payload:
    # The walkthrough stored 1.5 as a JSON float. Its repr is the shortest exact text
    # of the stored double, so it converts to the price the producer meant.
    return {**data, "price": str(Decimal(repr(float(data["price"]))).quantize(Decimal("0.01")))}


def upcast(event_type: str, schema_version: int, data: Payload) -> Payload:
    cls = EVENT_TYPES.get(event_type)
    if cls is None:
        raise UnknownEventType(event_type)
    if schema_version > cls.schema_version or schema_version < 1:
        raise UnknownSchemaVersion(event_type, schema_version)
    while schema_version < cls.schema_version:
        step = UPCASTERS.get((event_type, schema_version))
        if step is None:
            raise UnknownSchemaVersion(event_type, schema_version)
        data = step(data)
        schema_version += 1
    return data


class StoredEvent(NamedTuple):
    """An event as the store keeps it, before upcasting. Every backend and the global
    log read events into this one shape. A tuple: a replay makes one per event."""

    event_type: str
    schema_version: int
    data: Payload
    version: int
    event_id: str
    timestamp: datetime
    metadata: EventMetadata


def events_from_stored(aggregate_id: str, stored: Iterable[StoredEvent]) -> list[Event]:
    """Rebuild a stream's domain events from their stored form, upcasting old shapes on
    the way.

    Replaying builds thousands of events per order, so this is one loop with no call per
    event but the payload's own. An event is not built by its ``__init__``: a frozen
    dataclass's sets each field with ``object.__setattr__``, which cost as much as the
    rest of decoding together. Its fields go straight into its ``__dict__`` instead, the
    payload's already checked by ``payload``. That equals calling ``__init__`` only while
    events keep their fields in a ``__dict__`` and check nothing in ``__init__``; a test
    (``test_building_an_event_from_the_store_is_building_it_by_its_constructor``) fails
    as soon as an event gains ``__slots__``, a ``__post_init__`` or a default factory.
    """
    events: list[Event] = []
    for event_type, schema_version, data, version, event_id, timestamp, metadata in stored:
        cls = EVENT_TYPES.get(event_type)
        if cls is None:
            raise UnknownEventType(event_type)
        try:
            if schema_version != cls.schema_version:
                data = upcast(event_type, schema_version, data)
            fields = cls.payload(data)
        except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
            raise MalformedEvent(event_type, f"{type(exc).__name__}: {exc}") from exc
        fields["aggregate_id"] = aggregate_id
        fields["version"] = version
        fields["event_id"] = event_id
        fields["timestamp"] = timestamp
        fields["metadata"] = metadata
        event = object.__new__(cls)
        object.__setattr__(event, "__dict__", fields)
        events.append(event)
    return events


def event_from_stored(
    *,
    event_type: str,
    schema_version: int,
    data: Payload,
    aggregate_id: str,
    version: int,
    event_id: str,
    timestamp: datetime,
    metadata: Mapping[str, Any] | EventMetadata | None,
) -> Event:
    """One event of ``events_from_stored``; ``metadata`` may also be its stored mapping."""
    if not isinstance(metadata, EventMetadata):
        metadata = EventMetadata.from_dict(metadata or {})
    stored = StoredEvent(event_type, schema_version, data, version, event_id, timestamp, metadata)
    [event] = events_from_stored(aggregate_id, [stored])
    return event
