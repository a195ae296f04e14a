"""Which database errors are worth waiting out."""

from __future__ import annotations

from sqlalchemy.exc import (
    DBAPIError,
    DisconnectionError,
    InterfaceError,
    OperationalError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout

UNREACHABLE = (OperationalError, InterfaceError, DisconnectionError, PoolTimeout)
"""Errors that mean the database cannot serve now: it cannot be reached, it dropped the
connection, it has no connection slot left (``too many connections``), or the pool has
none free. Worth waiting out, never the fault of the command or event at hand.

Every path that touches the database sees SQLAlchemy's exceptions only: the driver's
own are translated where driver connections are taken (``store/postgres/driver.py``)."""


def is_unreachable(error: BaseException) -> bool:
    """Whether ``error`` says the database cannot serve now (see ``UNREACHABLE``)."""
    if isinstance(error, UNREACHABLE):
        return True
    return isinstance(error, DBAPIError) and error.connection_invalidated
