"""The commands producers send: the contract between producers and the order system.

Every field is checked when a command is built, by the producer and again by the
worker when it decodes one off the broker.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from decimal import Decimal
from typing import Any, ClassVar

from commands import fields as check

Check = Callable[[str, Any], Any]


def checked(validator: Check) -> dict[str, Check]:
    """Field metadata naming the check that validates and normalises the field."""
    return {"check": validator}


def new_command_id() -> str:
    return str(uuid.uuid4())


@dataclass(frozen=True)
class Command:
    """Fields every command carries: the order it is about, then keyword-only ids.

    ``command_id`` identifies the command across redeliveries and is also the Celery
    task id; ``expected_version``, when given, makes the command fail rather than apply
    to an order that moved on since the producer looked at it.
    """

    command_type: ClassVar[str]

    order_id: str = field(metadata=checked(check.identifier))
    command_id: str = field(
        default_factory=new_command_id, kw_only=True, metadata=checked(check.command_id)
    )
    correlation_id: str | None = field(
        default=None, kw_only=True, metadata=checked(check.optional_identifier)
    )
    expected_version: int | None = field(
        default=None, kw_only=True, metadata=checked(check.expected_version)
    )

    def __post_init__(self) -> None:
        for spec in fields(self):
            validator: Check = spec.metadata["check"]
            # Frozen dataclass: normalised values are written back once, here.
            object.__setattr__(self, spec.name, validator(spec.name, getattr(self, spec.name)))


@dataclass(frozen=True)
class CreateOrder(Command):
    command_type: ClassVar[str] = "CreateOrder"

    customer_id: str = field(metadata=checked(check.identifier))


@dataclass(frozen=True)
class AddItem(Command):
    command_type: ClassVar[str] = "AddItem"

    item_id: str = field(metadata=checked(check.identifier))
    quantity: int = field(metadata=checked(check.quantity))
    price: Decimal = field(metadata=checked(check.price))


@dataclass(frozen=True)
class RemoveItem(Command):
    command_type: ClassVar[str] = "RemoveItem"

    item_id: str = field(metadata=checked(check.identifier))


@dataclass(frozen=True)
class PayOrder(Command):
    command_type: ClassVar[str] = "PayOrder"

    payment_method: str = field(metadata=checked(check.identifier))


@dataclass(frozen=True)
class CancelOrder(Command):
    command_type: ClassVar[str] = "CancelOrder"

    reason: str = field(metadata=checked(check.text))


COMMAND_TYPES: dict[str, type[Command]] = {
    cls.command_type: cls for cls in (CreateOrder, AddItem, RemoveItem, PayOrder, CancelOrder)
}
