"""The producers' contract: command messages, their validation and outcomes, and the
client that sends them (``from commands import CommandClient``).

The client is imported only when asked for: the domain imports this package for the
commands, and must not import Celery with them.
"""

from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from commands.client import BrokerUnavailable, CommandClient, OutcomeTimeout, Receipt

_CLIENT = ("BrokerUnavailable", "CommandClient", "OutcomeTimeout", "Receipt")


def __getattr__(name: str) -> Any:
    if name in _CLIENT:
        from commands import client

        return getattr(client, name)
    raise AttributeError(f"module 'commands' has no attribute {name!r}")


__all__ = [
    "COMMAND_TYPES",
    "AddItem",
    "BrokerUnavailable",
    "CancelOrder",
    "Command",
    "CommandClient",
    "CreateOrder",
    "InvalidCommand",
    "Outcome",
    "OutcomeTimeout",
    "PayOrder",
    "Receipt",
    "RemoveItem",
]
