"""Typed errors. Each domain error is named after the rule it guards."""

from __future__ import annotations


class DomainError(Exception):
    """A command broke one of the Order's rules; nothing was written."""

    def __init__(self, order_id: str, message: str) -> None:
        super().__init__(message)
        self.order_id = order_id


class OrderNotFound(DomainError):
    def __init__(self, order_id: str) -> None:
        super().__init__(order_id, f"order {order_id} does not exist")


class OrderAlreadyExists(DomainError):
    def __init__(self, order_id: str) -> None:
        super().__init__(order_id, f"order {order_id} already exists")


class OrderNotOpen(DomainError):
    """Items can be added or removed only while the order is ``created``."""

    def __init__(self, order_id: str, status: str) -> None:
        super().__init__(order_id, f"order {order_id} is {status}: its items can no longer change")
        self.status = status


class ItemNotInOrder(DomainError):
    def __init__(self, order_id: str, item_id: str) -> None:
        super().__init__(order_id, f"item {item_id} is not in order {order_id}")
        self.item_id = item_id


class PriceMismatch(DomainError):
    """An item already in the order can be added again only at the same unit price."""

    def __init__(self, order_id: str, item_id: str, current: object, offered: object) -> None:
        super().__init__(
            order_id,
            f"item {item_id} is in order {order_id} at {current}, not {offered}",
        )
        self.item_id = item_id


class QuantityLimitExceeded(DomainError):
    def __init__(self, order_id: str, item_id: str, quantity: int, limit: int) -> None:
        super().__init__(
            order_id, f"item {item_id} would reach quantity {quantity}, above the limit {limit}"
        )
        self.item_id = item_id


class TooManyLines(DomainError):
    """An order holds at most a set number of distinct items (``ORDERS_MAX_LINES``)."""

    def __init__(self, order_id: str, item_id: str, limit: int) -> None:
        super().__init__(
            order_id,
            f"order {order_id} already has {limit} distinct items, the most it may hold: "
            f"item {item_id} cannot be added",
        )
        self.item_id = item_id


class NothingToPay(DomainError):
    def __init__(self, order_id: str) -> None:
        super().__init__(order_id, f"order {order_id} totals zero: there is nothing to pay")


class PaymentAfterCancellation(DomainError):
    def __init__(self, order_id: str) -> None:
        super().__init__(order_id, f"order {order_id} is cancelled and cannot be paid")


class OrderAlreadyPaid(DomainError):
    def __init__(self, order_id: str) -> None:
        super().__init__(order_id, f"order {order_id} is already paid")


class CannotCancelPaidOrder(DomainError):
    def __init__(self, order_id: str) -> None:
        super().__init__(order_id, f"order {order_id} is paid and cannot be cancelled")


class OrderAlreadyCancelled(DomainError):
    def __init__(self, order_id: str) -> None:
        super().__init__(order_id, f"order {order_id} is already cancelled")


class VersionConflict(Exception):
    """Another writer appended to the stream first (or the caller's version is stale)."""

    def __init__(self, stream: str, expected: int, actual: int) -> None:
        super().__init__(f"stream {stream}: expected version {expected}, actual version {actual}")
        self.stream = stream
        self.expected = expected
        self.actual = actual


class DuplicateCommand(Exception):
    """The command id is already in the command log: the command was handled before."""

    def __init__(self, command_id: str) -> None:
        super().__init__(f"command {command_id} is already recorded")
        self.command_id = command_id


class CommandIdReused(Exception):
    """A command id already in the command log came with a different command.

    Command ids identify one command across its redeliveries; reusing one for another
    command would hand that command the first one's outcome. It is refused, and nothing
    is written.
    """

    def __init__(self, command_id: str, command_type: str, order_id: str) -> None:
        super().__init__(
            f"command id {command_id} was used before for a different command; "
            f"this {command_type} for order {order_id} was not applied: give it a new id"
        )
        self.command_id = command_id


class StoredEventError(Exception):
    """A stored event cannot be turned back into a domain event."""


class UnknownEventType(StoredEventError):
    def __init__(self, event_type: str) -> None:
        super().__init__(f"unknown event type {event_type!r}")
        self.event_type = event_type


class UnknownSchemaVersion(StoredEventError):
    def __init__(self, event_type: str, schema_version: int) -> None:
        super().__init__(f"no upcaster brings {event_type} schema version {schema_version} up")
        self.event_type = event_type
        self.schema_version = schema_version


class MalformedEvent(StoredEventError):
    def __init__(self, event_type: str, reason: str) -> None:
        super().__init__(f"stored {event_type} is malformed: {reason}")
        self.event_type = event_type
