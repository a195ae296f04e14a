"""Field checks shared by every command.

Each check takes the field's name and the raw value and returns the normalised value,
or raises ``InvalidCommand``. The worker runs the same checks on what it reads off the
broker: it never trusts the producer.
"""

from __future__ import annotations

import math
import re
import uuid
from decimal import Decimal, InvalidOperation
from typing import Any

from commands.errors import InvalidCommand

MAX_ID_LENGTH = 128
MAX_TEXT_LENGTH = 500
MAX_QUANTITY = 10_000
MAX_PRICE = Decimal("1000000")
MAX_VERSION = 2**31 - 1
CENT = Decimal("0.01")

_IDENTIFIER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@/+-]*")
_DECIMAL_TEXT = re.compile(r"-?[0-9]{1,16}(\.[0-9]{1,16})?")


def shown(value: Any, limit: int = 40) -> str:
    """A value short enough for an error message, whatever a producer sent."""
    text = value if isinstance(value, str) and not isinstance(value, bool) else repr(value)
    text = str(text)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def _require_str(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidCommand(name, f"must be a string, got {type(value).__name__}")
    return value


def identifier(name: str, value: Any) -> str:
    """An id such as ``order-001``: 1..128 characters, no spaces or control characters."""
    text = _require_str(name, value)
    if not text:
        raise InvalidCommand(name, "must not be empty")
    if len(text) > MAX_ID_LENGTH:
        raise InvalidCommand(name, f"must be at most {MAX_ID_LENGTH} characters, got {len(text)}")
    if not _IDENTIFIER.fullmatch(text):
        raise InvalidCommand(
            name, "may hold only letters, digits and . _ : @ / + - and must start with one"
        )
    return text


def optional_identifier(name: str, value: Any) -> str | None:
    return None if value is None else identifier(name, value)


def text(name: str, value: Any) -> str:
    """Free text such as a cancel reason: 1..500 printable characters."""
    text_value = _require_str(name, value)
    if not text_value.strip():
        raise InvalidCommand(name, "must not be empty")
    if len(text_value) > MAX_TEXT_LENGTH:
        raise InvalidCommand(
            name, f"must be at most {MAX_TEXT_LENGTH} characters, got {len(text_value)}"
        )
    if not text_value.isprintable():
        raise InvalidCommand(name, "must not contain control characters")
    return text_value


def command_id(name: str, value: Any) -> str:
    """A UUID, returned in canonical lower-case form so one command has one id."""
    raw = _require_str(name, value)
    if len(raw) > 64:
        raise InvalidCommand(name, "must be a UUID")
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise InvalidCommand(name, f"must be a UUID, got {shown(raw)!r}") from None


def quantity(name: str, value: Any) -> int:
    # bool is an int subclass; True as a quantity is a bug at the producer, not 1.
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidCommand(name, f"must be an integer, got {type(value).__name__}")
    if not 1 <= value <= MAX_QUANTITY:
        raise InvalidCommand(name, f"must be between 1 and {MAX_QUANTITY}, got {shown(value)}")
    return value


def price(name: str, value: Any) -> Decimal:
    """A unit price: exact, non-negative, at most 2 decimal places, at most 1,000,000."""
    if isinstance(value, float):
        reason = "is not a number" if math.isnan(value) else "must be exact"
        raise InvalidCommand(name, f"{reason}: pass a Decimal or a string like '1.50', not a float")
    if isinstance(value, bool) or not isinstance(value, (Decimal, int, str)):
        raise InvalidCommand(name, f"must be a decimal, got {type(value).__name__}")
    if isinstance(value, str) and not _DECIMAL_TEXT.fullmatch(value):
        raise InvalidCommand(name, f"must be a decimal like '1.50', got {shown(value)!r}")
    try:
        amount = Decimal(value)
    except (InvalidOperation, ValueError):
        raise InvalidCommand(name, f"must be a decimal, got {shown(value)!r}") from None
    if not amount.is_finite():
        raise InvalidCommand(name, f"must be a finite number, got {shown(value)!r}")
    if amount < 0:
        raise InvalidCommand(name, f"must not be negative, got {shown(amount)}")
    if amount > MAX_PRICE:
        raise InvalidCommand(name, f"must be at most {MAX_PRICE}, got {shown(amount)}")
    exponent = amount.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -2:
        raise InvalidCommand(name, f"must have at most 2 decimal places, got {shown(amount)}")
    # copy_abs: "-0.00" is zero, and must not reach an event as a negative price.
    return amount.quantize(CENT).copy_abs()


def expected_version(name: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidCommand(name, f"must be an integer or null, got {type(value).__name__}")
    if not 0 <= value <= MAX_VERSION:
        raise InvalidCommand(name, f"must be between 0 and {MAX_VERSION}, got {shown(value)}")
    return value
