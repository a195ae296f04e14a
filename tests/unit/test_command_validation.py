"""Every field of every command is checked when the command is built."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import pytest

from commands import (
    AddItem,
    CancelOrder,
    Command,
    CreateOrder,
    InvalidCommand,
    PayOrder,
    RemoveItem,
)

VALID: dict[type[Command], dict[str, Any]] = {
    CreateOrder: {"order_id": "order-001", "customer_id": "customer-123"},
    AddItem: {"order_id": "order-001", "item_id": "apple", "quantity": 3, "price": "1.50"},
    RemoveItem: {"order_id": "order-001", "item_id": "apple"},
    PayOrder: {"order_id": "order-001", "payment_method": "credit_card"},
    CancelOrder: {"order_id": "order-001", "reason": "changed my mind"},
}
COMMANDS = list(VALID)


def build(cls: type[Command], **overrides: Any) -> Any:
    return cls(**{**VALID[cls], **overrides})


def rejected(cls: type[Command], **overrides: Any) -> InvalidCommand:
    with pytest.raises(InvalidCommand) as raised:
        build(cls, **overrides)
    return raised.value


@pytest.mark.parametrize("cls", COMMANDS, ids=lambda cls: cls.__name__)
def test_valid_command_builds(cls: type[Command]) -> None:
    command = build(cls)

    assert command.order_id == "order-001"


# -- identifiers -------------------------------------------------------------------------

REQUIRED_IDS = [
    (CreateOrder, "order_id"),
    (CreateOrder, "customer_id"),
    (AddItem, "order_id"),
    (AddItem, "item_id"),
    (RemoveItem, "order_id"),
    (RemoveItem, "item_id"),
    (PayOrder, "order_id"),
    (PayOrder, "payment_method"),
    (CancelOrder, "order_id"),
]
ALL_IDS = REQUIRED_IDS + [(cls, "correlation_id") for cls in COMMANDS]

BAD_IDS = [
    pytest.param(1, id="int"),
    pytest.param(b"order-001", id="bytes"),
    pytest.param("", id="empty"),
    pytest.param(" ", id="blank"),
    pytest.param("x" * 10_000, id="10kB"),
    pytest.param("x" * 129, id="129-chars"),
    pytest.param("order 001", id="space"),
    pytest.param("order\n001", id="newline"),
    pytest.param("order-001\n", id="trailing-newline"),
    pytest.param("order\x00001", id="nul"),
    pytest.param("\torder", id="tab"),
    pytest.param("-order", id="starts-with-dash"),
    pytest.param("bestellung-ä", id="non-ascii"),
]


@pytest.mark.parametrize(("cls", "field"), ALL_IDS, ids=lambda v: getattr(v, "__name__", v))
@pytest.mark.parametrize("value", BAD_IDS)
def test_bad_identifier_is_rejected(cls: type[Command], field: str, value: Any) -> None:
    error = rejected(cls, **{field: value})

    assert error.field == field


@pytest.mark.parametrize(("cls", "field"), REQUIRED_IDS, ids=lambda v: getattr(v, "__name__", v))
def test_missing_required_identifier_is_rejected(cls: type[Command], field: str) -> None:
    error = rejected(cls, **{field: None})

    assert error.field == field


@pytest.mark.parametrize(("cls", "field"), ALL_IDS, ids=lambda v: getattr(v, "__name__", v))
@pytest.mark.parametrize(
    "value", ["a", "x" * 128, "user@example.com", "a.b_c:d/e+f-g", "0rder-001"]
)
def test_good_identifier_is_kept_as_given(cls: type[Command], field: str, value: str) -> None:
    command = build(cls, **{field: value})

    assert getattr(command, field) == value


@pytest.mark.parametrize("cls", COMMANDS, ids=lambda cls: cls.__name__)
def test_correlation_id_is_optional(cls: type[Command]) -> None:
    assert build(cls).correlation_id is None


# -- quantity ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(0, id="zero"),
        pytest.param(-1, id="negative"),
        pytest.param(10_001, id="above-10000"),
        pytest.param("3", id="str"),
        pytest.param(3.0, id="float"),
        pytest.param(True, id="true"),
        pytest.param(False, id="false"),
        pytest.param(None, id="none"),
        pytest.param(Decimal(3), id="decimal"),
    ],
)
def test_bad_quantity_is_rejected(value: Any) -> None:
    error = rejected(AddItem, quantity=value)

    assert error.field == "quantity"


@pytest.mark.parametrize("value", [1, 3, 10_000])
def test_quantity_within_limits_is_accepted(value: int) -> None:
    assert build(AddItem, quantity=value).quantity == value


# -- price -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(1.5, id="float"),
        pytest.param(0.0, id="float-zero"),
        pytest.param(float("nan"), id="float-nan"),
        pytest.param(float("inf"), id="float-inf"),
        pytest.param(float("-inf"), id="float-minus-inf"),
        pytest.param(Decimal("NaN"), id="decimal-nan"),
        pytest.param(Decimal("sNaN"), id="decimal-snan"),
        pytest.param(Decimal("Infinity"), id="decimal-inf"),
        pytest.param(Decimal("-Infinity"), id="decimal-minus-inf"),
        pytest.param("NaN", id="str-nan"),
        pytest.param("Infinity", id="str-inf"),
        pytest.param("1.505", id="three-places"),
        pytest.param("1.500", id="three-places-trailing-zero"),
        pytest.param(Decimal("1.500"), id="decimal-three-places"),
        pytest.param("0.001", id="tenth-of-a-cent"),
        pytest.param("-0.01", id="negative-str"),
        pytest.param(-1, id="negative-int"),
        pytest.param(Decimal("-1.50"), id="negative-decimal"),
        pytest.param("1000000.01", id="just-above-max"),
        pytest.param(1_000_001, id="int-above-max"),
        pytest.param("1E+7", id="exponent-above-max"),
        pytest.param("abc", id="not-a-number"),
        pytest.param("1E+2", id="str-exponent"),
        pytest.param(" 1.50", id="str-leading-space"),
        pytest.param("1_0", id="str-underscore"),
        pytest.param("", id="empty"),
        pytest.param("1" * 33, id="33-chars"),
        pytest.param(True, id="bool"),
        pytest.param(None, id="none"),
        pytest.param([1], id="list"),
    ],
)
def test_bad_price_is_rejected(value: Any) -> None:
    error = rejected(AddItem, price=value)

    assert error.field == "price"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, "0.00"),
        ("0", "0.00"),
        ("0.00", "0.00"),
        ("1.5", "1.50"),
        ("1.50", "1.50"),
        (Decimal("0.75"), "0.75"),
        (2, "2.00"),
        ("1000000", "1000000.00"),
        (1_000_000, "1000000.00"),
        (Decimal("1000000.00"), "1000000.00"),
        (Decimal("1E+2"), "100.00"),
        ("-0", "0.00"),
        (Decimal("-0.00"), "0.00"),
    ],
)
def test_good_price_is_normalised_to_cents(value: Any, expected: str) -> None:
    price = build(AddItem, price=value).price

    assert isinstance(price, Decimal)
    assert str(price) == expected


# -- cancel reason -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("x" * 10_000, id="10kB"),
        pytest.param("x" * 501, id="501-chars"),
        pytest.param("", id="empty"),
        pytest.param("   ", id="blank"),
        pytest.param("changed\nmy mind", id="newline"),
        pytest.param("changed\tmy mind", id="tab"),
        pytest.param("bell\x07", id="bell"),
        pytest.param("nul\x00", id="nul"),
        pytest.param("escape\x1b[31m", id="ansi-escape"),
        pytest.param(42, id="int"),
        pytest.param(None, id="none"),
    ],
)
def test_bad_cancel_reason_is_rejected(value: Any) -> None:
    error = rejected(CancelOrder, reason=value)

    assert error.field == "reason"


@pytest.mark.parametrize("value", ["changed my mind", "zu spät", "x" * 500])
def test_printable_cancel_reason_is_kept(value: str) -> None:
    assert build(CancelOrder, reason=value).reason == value


# -- command id --------------------------------------------------------------------------


@pytest.mark.parametrize("cls", COMMANDS, ids=lambda cls: cls.__name__)
@pytest.mark.parametrize(
    "value",
    [
        pytest.param("not-a-uuid", id="words"),
        pytest.param("", id="empty"),
        pytest.param("1234", id="short-hex"),
        pytest.param("g" * 32, id="not-hex"),
        pytest.param(str(uuid.uuid4()) + "0", id="one-digit-too-many"),
        pytest.param("0" * 65, id="65-chars"),
        pytest.param(12345, id="int"),
        pytest.param(uuid.uuid4(), id="uuid-object"),
        pytest.param(None, id="none"),
    ],
)
def test_bad_command_id_is_rejected(cls: type[Command], value: Any) -> None:
    error = rejected(cls, command_id=value)

    assert error.field == "command_id"


@pytest.mark.parametrize(
    "value",
    [
        "6F9619FF-8B86-D011-B42D-00C04FC964FF",
        "{6f9619ff-8b86-d011-b42d-00c04fc964ff}",
        "6f9619ff8b86d011b42d00c04fc964ff",
    ],
)
def test_command_id_is_normalised_to_canonical_lower_case(value: str) -> None:
    command = build(PayOrder, command_id=value)

    assert command.command_id == "6f9619ff-8b86-d011-b42d-00c04fc964ff"


@pytest.mark.parametrize("cls", COMMANDS, ids=lambda cls: cls.__name__)
def test_generated_command_id_is_a_canonical_uuid(cls: type[Command]) -> None:
    command = build(cls)

    assert str(uuid.UUID(command.command_id)) == command.command_id


def test_generated_command_ids_differ_per_command() -> None:
    first, second = build(AddItem), build(AddItem)

    assert first.command_id != second.command_id


# -- expected version --------------------------------------------------------------------


@pytest.mark.parametrize("cls", COMMANDS, ids=lambda cls: cls.__name__)
@pytest.mark.parametrize(
    "value",
    [
        pytest.param(-1, id="negative"),
        pytest.param(True, id="true"),
        pytest.param(False, id="false"),
        pytest.param("3", id="str"),
        pytest.param(1.0, id="float"),
        pytest.param(2**31, id="above-int32"),
    ],
)
def test_bad_expected_version_is_rejected(cls: type[Command], value: Any) -> None:
    error = rejected(cls, expected_version=value)

    assert error.field == "expected_version"


@pytest.mark.parametrize("value", [None, 0, 4, 2**31 - 1])
def test_good_expected_version_is_kept(value: int | None) -> None:
    assert build(PayOrder, expected_version=value).expected_version == value


# -- the error itself --------------------------------------------------------------------


def test_invalid_command_is_a_value_error_naming_field_and_reason() -> None:
    error = rejected(AddItem, quantity=0)

    assert isinstance(error, ValueError)
    assert error.reason
    assert str(error).startswith("quantity: ")
