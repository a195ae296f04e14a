"""The Order domain: events, state, decisions and the command handler. No I/O here."""

from domain.decide import decide
from domain.errors import DomainError, DuplicateCommand, VersionConflict
from domain.events import Event
from domain.handler import CommandHandler, RetryPolicy, load_order
from domain.order import Order, evolve, fold

__all__ = [
    "CommandHandler",
    "DomainError",
    "DuplicateCommand",
    "Event",
    "Order",
    "RetryPolicy",
    "VersionConflict",
    "decide",
    "evolve",
    "fold",
    "load_order",
]
