"""The JSON envelope: what ``encode`` puts on the wire and what ``decode`` accepts from it.

Envelopes are passed through ``json.dumps``/``json.loads`` as they are on the broker,
so nothing Python-only (a Decimal, a tuple) can sneak through a round trip.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

from commands import (
    COMMAND_TYPES,
    AddItem,
    CancelOrder,
    Command,
    CreateOrder,
    InvalidCommand,
    PayOrder,
    RemoveItem,
)
from commands.envelope import ENVELOPE_SCHEMA, MAX_ENVELOPE_BYTES, InvalidEnvelope, decode, encode

CID = "3f2b8c1e-5d4a-4e6f-9a7b-1c2d3e4f5a6b"
SHORT = 300  # characters an error message may take, whatever a producer sent

COMMANDS: list[Command] = [
    CreateOrder("order-001", "customer-123", command_id=CID),
    AddItem("order-001", "apple", 3, Decimal("1.50"), command_id=CID),
    RemoveItem("order-001", "apple", command_id=CID),
    PayOrder("order-001", "credit_card", command_id=CID),
    CancelOrder("order-001", "changed my mind", command_id=CID),
]


def wire(value: Any) -> Any:
    """``value`` as a worker gets it off the broker."""
    return json.loads(json.dumps(value))


def add_item(**changes: Any) -> dict[str, Any]:
    """A valid AddItem envelope off the wire, with top-level ``changes`` applied."""
    envelope: dict[str, Any] = wire(encode(COMMANDS[1]))
    envelope.update(changes)
    return envelope


def with_payload(**changes: Any) -> dict[str, Any]:
    envelope = add_item()
    envelope["payload"].update(changes)
    return envelope


def without(key: str, payload: bool = False) -> dict[str, Any]:
    envelope = add_item()
    del (envelope["payload"] if payload else envelope)[key]
    return envelope


def rejected(envelope: Any) -> InvalidEnvelope:
    with pytest.raises(InvalidEnvelope) as raised:
        decode(envelope)
    return raised.value


def sized(total: int) -> dict[str, Any]:
    """A CancelOrder envelope of exactly ``total`` bytes as JSON (its reason is padded)."""
    envelope: dict[str, Any] = wire(encode(COMMANDS[4]))
    envelope["payload"]["reason"] = ""
    envelope["payload"]["reason"] = "x" * (total - len(json.dumps(envelope).encode()))
    assert len(json.dumps(envelope).encode()) == total
    return envelope


# -- round trips --------------------------------------------------------------------------


def test_every_command_type_is_covered() -> None:
    assert sorted(type(command).command_type for command in COMMANDS) == sorted(COMMAND_TYPES)


@pytest.mark.parametrize("command", COMMANDS, ids=lambda command: command.command_type)
def test_encode_then_decode_gives_the_same_command(command: Command) -> None:
    decoded = decode(wire(encode(command)))

    assert decoded == command
    assert type(decoded) is type(command)


@pytest.mark.parametrize("command", COMMANDS, ids=lambda command: command.command_type)
def test_the_optional_fields_travel_too(command: Command) -> None:
    own = {
        spec.name: getattr(command, spec.name)
        for spec in dataclasses.fields(command)
        if spec.name not in ("command_id", "correlation_id", "expected_version")
    }
    full = type(command)(**own, command_id=CID, correlation_id="checkout-42", expected_version=7)

    envelope = wire(encode(full))
    decoded = decode(envelope)

    assert decoded == full
    assert (decoded.correlation_id, decoded.expected_version) == ("checkout-42", 7)
    assert (envelope["correlation_id"], envelope["expected_version"]) == ("checkout-42", 7)


@pytest.mark.parametrize("command", COMMANDS, ids=lambda command: command.command_type)
def test_the_envelope_has_the_documented_shape(command: Command) -> None:
    envelope = encode(command)

    assert set(envelope) == {
        "type",
        "schema",
        "command_id",
        "correlation_id",
        "expected_version",
        "payload",
    }
    assert envelope["type"] == command.command_type
    assert envelope["schema"] == ENVELOPE_SCHEMA == 1
    assert envelope["command_id"] == CID
    assert envelope["payload"]["order_id"] == "order-001"
    assert not {"command_id", "correlation_id", "expected_version"} & set(envelope["payload"])
    assert wire(envelope) == envelope  # plain JSON already, nothing lost on the way


@pytest.mark.parametrize(
    ("price", "on_the_wire"),
    [(Decimal("1.50"), "1.50"), (Decimal("1.5"), "1.50"), ("0", "0.00"), (2, "2.00")],
)
def test_a_price_travels_as_a_decimal_string_with_two_places(price: Any, on_the_wire: str) -> None:
    command = AddItem("order-001", "apple", 1, price, command_id=CID)

    envelope = encode(command)
    decoded = decode(wire(envelope))

    assert envelope["payload"]["price"] == on_the_wire
    assert isinstance(decoded, AddItem)
    assert isinstance(decoded.price, Decimal)
    assert decoded.price == Decimal(on_the_wire)
    assert str(decoded.price) == on_the_wire


def test_a_command_id_in_capitals_decodes_to_its_canonical_form() -> None:
    decoded = decode(add_item(command_id=CID.upper()))

    assert decoded.command_id == CID


# -- malformed envelopes --------------------------------------------------------------

NOT_OBJECTS: dict[str, Any] = {
    "a list": [encode(COMMANDS[0])],
    "a string": json.dumps(encode(COMMANDS[0])),
    "a number": 42,
    "null": None,
    "true": True,
}


@pytest.mark.parametrize("envelope", NOT_OBJECTS.values(), ids=list(NOT_OBJECTS))
def test_an_envelope_that_is_not_an_object_is_rejected_without_a_command_id(
    envelope: Any,
) -> None:
    error = rejected(envelope)

    assert error.field == "envelope"
    assert error.reason == f"must be a JSON object, got {type(envelope).__name__}"
    assert error.command_id is None


Case = tuple[Callable[[], Any], str, str | None, str]

MALFORMED: dict[str, Case] = {
    # What is wrong: (envelope, field, command id the error carries, words in its reason)
    "no command_id": (lambda: without("command_id"), "command_id", None, "must be a UUID"),
    "command_id not a UUID": (
        lambda: add_item(command_id="order-001"),
        "command_id",
        None,
        "must be a UUID, got 'order-001'",
    ),
    "command_id a number": (
        lambda: add_item(command_id=42),
        "command_id",
        None,
        "must be a UUID, got 42",
    ),
    "command_id null": (lambda: add_item(command_id=None), "command_id", None, "got None"),
    "an unknown key": (
        lambda: add_item(priority="high"),
        "envelope",
        CID,
        "has unknown keys ['priority']",
    ),
    "schema 2": (lambda: add_item(schema=2), "schema", CID, "must be 1, got 2"),
    "schema 0": (lambda: add_item(schema=0), "schema", CID, "must be 1, got 0"),
    "schema '1'": (lambda: add_item(schema="1"), "schema", CID, "must be 1, got '1'"),
    "schema null": (lambda: add_item(schema=None), "schema", CID, "must be 1, got None"),
    "no schema": (lambda: without("schema"), "schema", CID, "must be 1, got None"),
    "an unknown type": (
        lambda: add_item(type="ShipOrder"),
        "type",
        CID,
        "unknown command type 'ShipOrder'",
    ),
    "a type in the wrong case": (
        lambda: add_item(type="additem"),
        "type",
        CID,
        "unknown command type 'additem'",
    ),
    "the base class as type": (lambda: add_item(type="Command"), "type", CID, "'Command'"),
    "a type that is not a string": (
        lambda: add_item(type=["AddItem"]),
        "type",
        CID,
        "unknown command type ['AddItem']",
    ),
    "no type": (lambda: without("type"), "type", CID, "unknown command type None"),
    "payload a list": (lambda: add_item(payload=[]), "payload", CID, "must be a JSON object"),
    "payload a string": (lambda: add_item(payload="x"), "payload", CID, "must be a JSON object"),
    "no payload": (lambda: without("payload"), "payload", CID, "must be a JSON object"),
    "a missing field": (
        lambda: without("price", payload=True),
        "payload",
        CID,
        "AddItem needs ['item_id', 'order_id', 'price', 'quantity']; missing ['price'], unknown []",
    ),
    "an extra field": (
        lambda: with_payload(discount="0.10"),
        "payload",
        CID,
        "missing [], unknown ['discount']",
    ),
    "an envelope key inside the payload": (
        lambda: with_payload(command_id=CID),
        "payload",
        CID,
        "unknown ['command_id']",
    ),
    "quantity as a string": (
        lambda: with_payload(quantity="3"),
        "quantity",
        CID,
        "must be an integer, got str",
    ),
    "quantity true": (
        lambda: with_payload(quantity=True),
        "quantity",
        CID,
        "must be an integer, got bool",
    ),
    "quantity 0": (lambda: with_payload(quantity=0), "quantity", CID, "got 0"),
    "price as a float": (
        lambda: with_payload(price=1.5),
        "price",
        CID,
        "must be exact: pass a Decimal or a string like '1.50', not a float",
    ),
    "price with 3 places": (
        lambda: with_payload(price="1.505"),
        "price",
        CID,
        "at most 2 decimal places",
    ),
    "price not a number": (lambda: with_payload(price="abc"), "price", CID, "got 'abc'"),
    "an empty order_id": (lambda: with_payload(order_id=""), "order_id", CID, "must not be empty"),
    "an item_id with a space": (
        lambda: with_payload(item_id="red apple"),
        "item_id",
        CID,
        "may hold only",
    ),
    "a correlation_id with a space": (
        lambda: add_item(correlation_id="check out"),
        "correlation_id",
        CID,
        "may hold only",
    ),
    "expected_version negative": (
        lambda: add_item(expected_version=-1),
        "expected_version",
        CID,
        "got -1",
    ),
    "expected_version a string": (
        lambda: add_item(expected_version="3"),
        "expected_version",
        CID,
        "must be an integer or null, got str",
    ),
    "expected_version true": (
        lambda: add_item(expected_version=True),
        "expected_version",
        CID,
        "got bool",
    ),
}


@pytest.mark.parametrize(
    ("make", "field", "command_id", "words"), MALFORMED.values(), ids=list(MALFORMED)
)
def test_a_malformed_envelope_is_rejected_naming_the_field_and_its_command_id(
    make: Callable[[], Any], field: str, command_id: str | None, words: str
) -> None:
    error = rejected(make())

    assert error.field == field
    assert error.command_id == command_id
    assert words in error.reason
    assert str(error) == f"{field}: {error.reason}"
    assert isinstance(error, InvalidCommand)  # one except clause catches both


def test_schema_true_is_not_schema_1() -> None:
    rejected(add_item(schema=True))


def test_a_rejection_names_the_first_bad_field_and_the_canonical_command_id() -> None:
    envelope = add_item(command_id=CID.upper(), schema=9, type="Nope", payload=None)

    error = rejected(envelope)

    assert (error.field, error.command_id) == ("schema", CID)


# -- size -----------------------------------------------------------------------------------


def test_an_envelope_over_64_kb_is_rejected_with_its_command_id() -> None:
    error = rejected(sized(MAX_ENVELOPE_BYTES + 1))

    assert error.field == "envelope"
    assert error.reason == f"is {MAX_ENVELOPE_BYTES + 1} bytes, above {MAX_ENVELOPE_BYTES}"
    assert error.command_id == CID


def test_an_envelope_of_exactly_64_kb_passes_the_size_check() -> None:
    # Its reason is far too long for a CancelOrder, but that is the next check's business.
    error = rejected(sized(MAX_ENVELOPE_BYTES))

    assert error.field == "reason"
    assert error.command_id == CID


def test_an_oversized_envelope_without_a_readable_command_id_says_so() -> None:
    envelope = sized(MAX_ENVELOPE_BYTES * 2)
    envelope["command_id"] = "not-a-uuid"

    error = rejected(envelope)

    assert error.field == "envelope"
    assert error.command_id is None


def test_encode_refuses_an_envelope_over_64_kb() -> None:
    command = CancelOrder("order-001", "changed my mind", command_id=CID)
    object.__setattr__(command, "reason", "x" * MAX_ENVELOPE_BYTES)  # past validation

    with pytest.raises(InvalidCommand) as raised:
        encode(command)

    assert raised.value.field == "envelope"
    assert raised.value.reason.endswith(f"bytes, above {MAX_ENVELOPE_BYTES}")


# -- garbage in, short messages out -----------------------------------------------------

BIG = 60_000  # under the size limit, so the value reaches the check that judges it
HUGE_INT = 10**4000  # JSON carries it, and json.loads parses it (below Python's 4300 digits)

GARBAGE: list[Any] = [
    pytest.param(lambda: add_item(type="T" * BIG), id="type"),
    pytest.param(lambda: add_item(command_id="c" * BIG), id="command_id"),
    pytest.param(lambda: add_item(schema="s" * BIG), id="schema"),
    pytest.param(lambda: add_item(**{"k" * BIG: 1}), id="unknown key"),
    pytest.param(lambda: with_payload(**{"p" * BIG: 1}), id="unknown payload key"),
    pytest.param(lambda: with_payload(order_id="o" * BIG), id="order_id"),
    pytest.param(lambda: with_payload(item_id=" " * BIG), id="item_id of spaces"),
    pytest.param(lambda: with_payload(item_id=[[["deep"]]] * 2000), id="item_id a list"),
    pytest.param(lambda: with_payload(price="9" * BIG), id="price string"),
    pytest.param(lambda: add_item(correlation_id="c" * BIG), id="correlation_id"),
    pytest.param(lambda: add_item(payload={"x": "y" * BIG}), id="payload of the wrong shape"),
    pytest.param(lambda: add_item(type="T" * 10**6), id="a megabyte"),
    pytest.param(
        lambda: with_payload(quantity=HUGE_INT),
        id="quantity of 4000 digits",
    ),
    pytest.param(
        lambda: with_payload(price=HUGE_INT),
        id="price of 4000 digits",
    ),
    pytest.param(
        lambda: add_item(expected_version=HUGE_INT),
        id="expected_version of 4000 digits",
    ),
]


@pytest.mark.parametrize("make", GARBAGE)
def test_huge_garbage_gives_a_short_error_message(make: Callable[[], Any]) -> None:
    envelope = wire(make())

    error = rejected(envelope)

    assert len(str(error)) < SHORT, f"{len(str(error))} characters: {str(error)[:200]}..."
