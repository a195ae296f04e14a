"""The producers' contract: command messages, their validation and outcomes."""

from commands.errors import InvalidCommand
from commands.messages import (
    COMMAND_TYPES,
    AddItem,
    CancelOrder,
    Command,
    CreateOrder,
    PayOrder,
    RemoveItem,
)
from commands.outcome import Outcome

__all__ = [
    "COMMAND_TYPES",
    "AddItem",
    "CancelOrder",
    "Command",
    "CreateOrder",
    "InvalidCommand",
    "Outcome",
    "PayOrder",
    "RemoveItem",
]
