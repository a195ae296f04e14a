"""The JSON Schemas of the wire contract (commands/schema/) say what the worker does.

Every envelope below goes through both the schema and the worker's own validation
(``commands.envelope.decode``); they must agree. Where the worker is more lenient than
the schema (it takes more spellings of a value than producers are asked to send), the
case is listed in ``LENIENT`` with the reason. Every outcome a worker can produce
validates against the outcome schema.
"""

from __future__ import annotations

import copy
import json
from decimal import Decimal
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from commands import (
    AddItem,
    CancelOrder,
    CreateOrder,
    InvalidCommand,
    Outcome,
    PayOrder,
    RemoveItem,
)
from commands.envelope import MAX_ENVELOPE_BYTES, decode, encode
from commands.schema import load

COMMAND = Draft202012Validator(load("command"))
OUTCOME = Draft202012Validator(load("outcome"))


def valid_envelopes() -> dict[str, dict[str, Any]]:
    commands = {
        "create": CreateOrder("order-001", "customer-123"),
        "create, ids with every allowed sign": CreateOrder("a.b_c:d@e/f+g-h", "C" * 128),
        "add": AddItem("order-001", "apple", 3, Decimal("1.50")),
        "add, free item": AddItem("order-001", "gift", 1, "0"),
        "add, the most": AddItem("order-001", "gold", 10_000, "1000000"),
        "add, whole price": AddItem("order-001", "pear", 2, 7),
        "remove": RemoveItem("order-001", "apple"),
        "pay": PayOrder("order-001", "credit_card"),
        "cancel": CancelOrder("order-001", "changed my mind"),
        "cancel, unicode": CancelOrder("order-001", "trop cher — désolé ✓"),
        "with correlation and version": CreateOrder(
            "order-002", "c-1", correlation_id="conv-9", expected_version=0
        ),
    }
    return {name: encode(command) for name, command in commands.items()}


def changed(path: str, value: Any, base: str = "add") -> dict[str, Any]:
    envelope = copy.deepcopy(valid_envelopes()[base])
    target = envelope
    *parents, leaf = path.split(".")
    for parent in parents:
        target = target[parent]
    if value is DELETE:
        del target[leaf]
    else:
        target[leaf] = value
    return envelope


DELETE = object()

INVALID = {
    "unknown type": changed("type", "ShipOrder"),
    "schema 2": changed("schema", 2),
    "schema true": changed("schema", True),
    "no command id": changed("command_id", DELETE),
    "command id not a uuid": changed("command_id", "order-1"),
    "command id a number": changed("command_id", 7),
    "unknown key": changed("extra", 1),
    "payload missing a field": changed("payload.price", DELETE),
    "payload with an extra field": changed("payload.colour", "red"),
    "payload not an object": changed("payload", ["order-001"]),
    "quantity zero": changed("payload.quantity", 0),
    "quantity too big": changed("payload.quantity", 10_001),
    "quantity a string": changed("payload.quantity", "3"),
    "quantity true": changed("payload.quantity", True),
    "price a float": changed("payload.price", 1.5),
    "price three places": changed("payload.price", "1.505"),
    "price negative": changed("payload.price", "-1.00"),
    "price too big": changed("payload.price", "1000000.01"),
    "price not a number": changed("payload.price", "one"),
    "order id empty": changed("payload.order_id", ""),
    "order id with a space": changed("payload.order_id", "order 1"),
    "order id too long": changed("payload.order_id", "o" * 129),
    "order id a number": changed("payload.order_id", 1),
    "expected version negative": changed("expected_version", -1),
    "expected version a string": changed("expected_version", "1"),
    "correlation id with a space": changed("correlation_id", "a b"),
    "reason empty": changed("payload.reason", "", base="cancel"),
    "reason only spaces": changed("payload.reason", "   ", base="cancel"),
    "reason with a newline": changed("payload.reason", "a\nb", base="cancel"),
    "reason too long": changed("payload.reason", "r" * 501, base="cancel"),
}

LENIENT = {
    # The worker normalises these; producers are asked for the canonical spelling.
    "command id in braces": (
        changed("command_id", "{" + "1" * 8 + "-1111-4111-8111-" + "1" * 12 + "}"),
        "uuid.UUID reads it",
    ),
    "command id without hyphens": (changed("command_id", "1" * 32), "uuid.UUID reads it"),
    "price with a leading zero": (changed("payload.price", "01.50"), "Decimal reads it"),
}


def worker_accepts(envelope: dict[str, Any]) -> bool:
    try:
        decode(envelope)
    except InvalidCommand:
        return False
    return True


@pytest.mark.parametrize("envelope", valid_envelopes().values(), ids=list(valid_envelopes()))
def test_every_valid_envelope_satisfies_the_schema(envelope: dict[str, Any]) -> None:
    assert worker_accepts(envelope)
    assert list(COMMAND.iter_errors(envelope)) == []


@pytest.mark.parametrize("envelope", INVALID.values(), ids=list(INVALID))
def test_the_schema_refuses_what_the_worker_refuses(envelope: dict[str, Any]) -> None:
    assert not worker_accepts(envelope)
    assert not COMMAND.is_valid(envelope)


@pytest.mark.parametrize(("case", "why"), LENIENT.values(), ids=list(LENIENT))
def test_the_worker_is_more_lenient_only_where_listed(case: dict[str, Any], why: str) -> None:
    assert worker_accepts(case), why
    assert not COMMAND.is_valid(case)  # else it would not belong in this list


def test_the_size_limit_is_the_one_the_schema_states() -> None:
    assert "64 KiB" in load("command")["description"]
    assert MAX_ENVELOPE_BYTES == 64 * 1024


OUTCOMES = [
    Outcome("accepted", "c-1", "order-001", 2, ("ItemAdded",)),
    Outcome("rejected", "c-2", "order-001", error="OrderAlreadyPaid", message="order is paid"),
    Outcome("rejected", "c-3", None, error="InvalidCommand", message="command_id: must be a UUID"),
    Outcome("failed", "c-4", "order-001", error="DatabaseUnavailable", message="down"),
]


@pytest.mark.parametrize(
    "outcome", OUTCOMES, ids=[o.status + "-" + (o.error or "") for o in OUTCOMES]
)
def test_every_kind_of_outcome_satisfies_the_outcome_schema(outcome: Outcome) -> None:
    as_sent = json.loads(json.dumps(outcome.to_dict()))
    assert list(OUTCOME.iter_errors(as_sent)) == []


def test_the_outcome_schema_refuses_an_accepted_outcome_without_events() -> None:
    broken = Outcome("accepted", "c-1", "order-001", 2, ()).to_dict()
    assert not OUTCOME.is_valid(broken)
