"""The versioned JSON envelope a command travels in.

    {"type": "AddItem", "schema": 1, "command_id": "...", "correlation_id": null,
     "expected_version": null, "payload": {"order_id": "...", "item_id": "...", ...}}

Both sides validate it: ``encode`` before a producer sends, ``decode`` when a worker
takes a message off the broker. Money travels as a decimal string, never a float.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import fields
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from commands.errors import InvalidCommand
from commands.fields import command_id as check_command_id
from commands.fields import shown
from commands.messages import COMMAND_TYPES, Command

ENVELOPE_SCHEMA = 1
MAX_ENVELOPE_BYTES = 64 * 1024
_ENVELOPE_KEYS = frozenset(
    {"type", "schema", "command_id", "correlation_id", "expected_version", "payload"}
)
_COMMON = frozenset({"command_id", "correlation_id", "expected_version"})


class InvalidEnvelope(InvalidCommand):
    """A message off the broker is not a valid command.

    ``command_id`` is set when the message carried a readable one, so the rejection
    can be recorded against it in the command log.
    """

    def __init__(self, field: str, reason: str, command_id: str | None = None) -> None:
        super().__init__(field, reason)
        self.command_id = command_id


def encode(command: Command) -> dict[str, Any]:
    payload = {
        spec.name: _jsonable(getattr(command, spec.name))
        for spec in fields(command)
        if spec.name not in _COMMON
    }
    envelope = {
        "type": command.command_type,
        "schema": ENVELOPE_SCHEMA,
        "command_id": command.command_id,
        "correlation_id": command.correlation_id,
        "expected_version": command.expected_version,
        "payload": payload,
    }
    size = len(json.dumps(envelope).encode())
    if size > MAX_ENVELOPE_BYTES:
        raise InvalidCommand("envelope", f"is {size} bytes, above {MAX_ENVELOPE_BYTES}")
    return envelope


def fingerprint(command: Command) -> str:
    """What the command asks for, as a digest: two commands with the same fingerprint
    do the same thing. The command id and correlation id are left out (they name the
    command, they do not say what it does); values are the validated, normalised ones,
    so ``"1.5"`` and ``"1.50"`` are one price."""
    envelope = encode(command)
    asked = {key: envelope[key] for key in ("type", "schema", "expected_version", "payload")}
    return digest(asked)


def digest(value: Any) -> str:
    """sha256 of ``value`` as canonical JSON (sorted keys, no spaces)."""
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def decode(envelope: Any) -> Command:
    """The command in ``envelope``; raises ``InvalidEnvelope`` saying what is wrong."""
    if not isinstance(envelope, dict):
        raise InvalidEnvelope("envelope", f"must be a JSON object, got {type(envelope).__name__}")
    envelope = plain(envelope)
    command_id = _readable_command_id(envelope)
    size = len(json.dumps(envelope).encode())
    if size > MAX_ENVELOPE_BYTES:
        raise InvalidEnvelope(
            "envelope", f"is {size} bytes, above {MAX_ENVELOPE_BYTES}", command_id
        )
    if command_id is None:
        raise InvalidEnvelope(
            "command_id", f"must be a UUID, got {_repr(envelope.get('command_id'))}"
        )
    unknown = set(envelope) - _ENVELOPE_KEYS
    if unknown:
        raise InvalidEnvelope("envelope", f"has unknown keys {_repr(sorted(unknown))}", command_id)
    # type(): True == 1 in Python, and a boolean is not a schema version.
    if type(envelope.get("schema")) is not int or envelope.get("schema") != ENVELOPE_SCHEMA:
        schema = envelope.get("schema")
        raise InvalidEnvelope(
            "schema", f"must be {ENVELOPE_SCHEMA}, got {_repr(schema)}", command_id
        )
    command_type = envelope.get("type")
    cls = COMMAND_TYPES.get(command_type) if isinstance(command_type, str) else None
    if cls is None:
        raise InvalidEnvelope("type", f"unknown command type {_repr(command_type)}", command_id)
    payload = envelope.get("payload")
    if not isinstance(payload, dict):
        raise InvalidEnvelope("payload", "must be a JSON object", command_id)
    expected = {spec.name for spec in fields(cls)} - _COMMON
    if set(payload) != expected:
        missing, extra = sorted(expected - set(payload)), _repr(sorted(set(payload) - expected))
        reason = f"{cls.command_type} needs {sorted(expected)}; missing {missing}, unknown {extra}"
        raise InvalidEnvelope("payload", reason, command_id)
    try:
        return cls(
            **payload,
            command_id=command_id,
            correlation_id=envelope.get("correlation_id"),
            expected_version=envelope.get("expected_version"),
        )
    except InvalidCommand as bad:
        raise InvalidEnvelope(bad.field, bad.reason, command_id) from None


def plain(value: Any) -> Any:
    """``value`` with what kombu's JSON decoder makes of a Python producer's values
    turned back into what the wire carries: a ``Decimal`` (``price=Decimal("1.50")``)
    its decimal string, a ``UUID`` (``command_id=uuid4()``) its canonical string, a
    ``datetime`` or ``date`` its ISO 8601 text. kombu writes them as typed markers and
    reads them back as objects, which ``json`` cannot dump again."""
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    if isinstance(value, Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def _readable_command_id(envelope: dict[str, Any]) -> str | None:
    try:
        return check_command_id("command_id", envelope.get("command_id"))
    except InvalidCommand:
        return None


def _jsonable(value: Any) -> Any:
    return str(value) if isinstance(value, Decimal) else value


def _repr(value: Any) -> str:
    return shown(repr(value), limit=60)
