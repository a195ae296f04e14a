"""Given the Order's earlier commands, when a command arrives, then these events or this error."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from commands import Command
from domain import errors
from domain.decide import Limits, decide
from domain.events import Event, ItemAdded, ItemRemoved, OrderCancelled, OrderCreated, OrderPaid
from domain.order import Line, Order, fold
from tests.support.commands import ORDER, add, cancel, create, pay, remove

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def given(*commands: Command) -> Order:
    order = Order(ORDER)
    for command in commands:
        order = fold(order, decide(order, command, at=NOW))
    return order


def when(order: Order, command: Command) -> list[Event]:
    return decide(order, command, at=NOW)


WALKTHROUGH = (create(ORDER), add(ORDER, "apple", 3, "1.50"), add(ORDER, "banana", 2, "0.75"))

# -- the walkthrough ---------------------------------------------------------------------


def test_walkthrough_order_totals_exactly_six() -> None:
    order = given(*WALKTHROUGH)

    assert order.total == Decimal("6.00")
    assert str(order.total) == "6.00"


def test_walkthrough_order_prints_as_in_the_walkthrough() -> None:
    order = given(*WALKTHROUGH, pay(ORDER))

    assert str(order) == (
        "Order(id=order-001, customer=customer-123, items=2, total=$6.00, status=paid, version=4)"
    )


def test_each_event_takes_the_next_version() -> None:
    order = Order(ORDER)
    versions = []
    for command in (*WALKTHROUGH, pay(ORDER)):
        events = when(order, command)
        versions += [event.version for event in events]
        order = fold(order, events)

    assert versions == [1, 2, 3, 4]
    assert order.version == 4


# -- create ------------------------------------------------------------------------------


def test_create_new_order() -> None:
    (event,) = when(Order(ORDER), create(ORDER))

    assert type(event) is OrderCreated
    assert event.aggregate_id == ORDER
    assert event.version == 1
    assert event.data() == {"customer_id": "customer-123", "status": "created"}
    assert given(create(ORDER)).status == "created"


@pytest.mark.parametrize(
    "history",
    [(create(ORDER),), (*WALKTHROUGH, pay(ORDER)), (create(ORDER), cancel(ORDER))],
    ids=["created", "paid", "cancelled"],
)
def test_create_existing_order_is_rejected(history: tuple[Command, ...]) -> None:
    with pytest.raises(errors.OrderAlreadyExists) as raised:
        when(given(*history), create(ORDER))

    assert raised.value.order_id == ORDER


@pytest.mark.parametrize(
    "command",
    [add(ORDER), remove(ORDER), pay(ORDER), cancel(ORDER)],
    ids=lambda c: type(c).__name__,
)
def test_command_on_missing_order_is_rejected(command: Command) -> None:
    with pytest.raises(errors.OrderNotFound) as raised:
        when(Order(ORDER), command)

    assert raised.value.order_id == ORDER


# -- add ---------------------------------------------------------------------------------


def test_add_item_to_created_order() -> None:
    (event,) = when(given(create(ORDER)), add(ORDER, "apple", 3, "1.50"))

    assert type(event) is ItemAdded
    assert event.version == 2
    assert event.data() == {"item_id": "apple", "quantity": 3, "price": "1.50"}


def test_adding_item_already_present_sums_its_quantity() -> None:
    order = given(create(ORDER), add(ORDER, "apple", 3, "1.50"))

    (event,) = when(order, add(ORDER, "apple", 2, "1.5"))

    assert event.data() == {"item_id": "apple", "quantity": 2, "price": "1.50"}
    assert fold(order, [event]).lines == {"apple": Line(5, Decimal("1.50"))}


def test_adding_item_already_present_at_another_price_is_rejected() -> None:
    order = given(create(ORDER), add(ORDER, "apple", 3, "1.50"))

    with pytest.raises(errors.PriceMismatch) as raised:
        when(order, add(ORDER, "apple", 1, "1.60"))

    assert raised.value.item_id == "apple"


def test_removed_item_can_be_added_again_at_another_price() -> None:
    order = given(create(ORDER), add(ORDER, "apple", 3, "1.50"), remove(ORDER, "apple"))

    order = fold(order, when(order, add(ORDER, "apple", 1, "1.60")))

    assert order.lines == {"apple": Line(1, Decimal("1.60"))}


def test_summed_quantity_up_to_the_limit_is_accepted() -> None:
    order = given(create(ORDER), add(ORDER, "apple", 9_999))

    order = fold(order, when(order, add(ORDER, "apple", 1)))

    assert order.lines["apple"].quantity == 10_000


def test_summed_quantity_above_the_limit_is_rejected() -> None:
    order = given(create(ORDER), add(ORDER, "apple", 10_000))

    with pytest.raises(errors.QuantityLimitExceeded) as raised:
        when(order, add(ORDER, "apple", 1))

    assert raised.value.item_id == "apple"


def test_a_new_item_up_to_the_lines_limit_is_accepted() -> None:
    limits = Limits(max_lines=3)
    order = given(create(ORDER), add(ORDER, "apple"), add(ORDER, "pear"))

    events = decide(order, add(ORDER, "plum"), at=NOW, limits=limits)

    assert [type(event) for event in events] == [ItemAdded]


def test_a_new_item_past_the_lines_limit_is_rejected_but_more_of_one_present_is_not() -> None:
    limits = Limits(max_lines=2)
    order = given(create(ORDER), add(ORDER, "apple"), add(ORDER, "pear"))

    with pytest.raises(errors.TooManyLines) as raised:
        decide(order, add(ORDER, "plum"), at=NOW, limits=limits)
    more = decide(order, add(ORDER, "apple", 1), at=NOW, limits=limits)

    assert raised.value.item_id == "plum"
    assert "already has 2 distinct items" in str(raised.value)
    assert [type(event) for event in more] == [ItemAdded]


def test_the_lines_limit_is_a_thousand_unless_set() -> None:
    assert Limits().max_lines == 1_000
    with pytest.raises(ValueError, match="at least 1"):
        Limits(max_lines=0)


CLOSED = pytest.mark.parametrize(
    ("history", "status"),
    [((*WALKTHROUGH, pay(ORDER)), "paid"), ((*WALKTHROUGH, cancel(ORDER)), "cancelled")],
    ids=["paid", "cancelled"],
)


@CLOSED
def test_adding_to_closed_order_is_rejected(history: tuple[Command, ...], status: str) -> None:
    with pytest.raises(errors.OrderNotOpen) as raised:
        when(given(*history), add(ORDER, "cherry", 1, "2.00"))

    assert raised.value.status == status


# -- remove ------------------------------------------------------------------------------


def test_remove_item_present() -> None:
    order = given(*WALKTHROUGH)

    (event,) = when(order, remove(ORDER, "apple"))

    assert type(event) is ItemRemoved
    assert event.version == 4
    assert event.data() == {"item_id": "apple"}
    assert list(fold(order, [event]).lines) == ["banana"]


@pytest.mark.parametrize(
    ("history", "item"),
    [
        ((create(ORDER),), "apple"),
        (WALKTHROUGH, "cherry"),
        ((*WALKTHROUGH, remove(ORDER, "apple")), "apple"),
    ],
    ids=["empty", "other-items", "already-removed"],
)
def test_removing_item_not_in_order_is_rejected(history: tuple[Command, ...], item: str) -> None:
    with pytest.raises(errors.ItemNotInOrder) as raised:
        when(given(*history), remove(ORDER, item))

    assert raised.value.item_id == item


@CLOSED
def test_removing_from_closed_order_is_rejected(history: tuple[Command, ...], status: str) -> None:
    with pytest.raises(errors.OrderNotOpen) as raised:
        when(given(*history), remove(ORDER, "apple"))

    assert raised.value.status == status


# -- pay ---------------------------------------------------------------------------------


def test_pay_order_with_items() -> None:
    order = given(*WALKTHROUGH)

    (event,) = when(order, pay(ORDER))

    assert type(event) is OrderPaid
    assert event.version == 4
    assert event.data() == {"payment_method": "credit_card", "status": "paid"}
    paid = fold(order, [event])
    assert paid.status == "paid"
    assert paid.payment_method == "credit_card"


def test_order_with_a_free_item_and_a_priced_one_can_be_paid() -> None:
    order = given(create(ORDER), add(ORDER, "sticker", 1, "0.00"), add(ORDER, "apple", 1, "0.01"))

    assert [type(e) for e in when(order, pay(ORDER))] == [OrderPaid]


@pytest.mark.parametrize(
    "history",
    [
        (create(ORDER),),
        (create(ORDER), add(ORDER, "sticker", 5, "0.00")),
        (*WALKTHROUGH, remove(ORDER, "apple"), remove(ORDER, "banana")),
    ],
    ids=["empty", "only-free-items", "all-items-removed"],
)
def test_paying_order_totalling_zero_is_rejected(history: tuple[Command, ...]) -> None:
    with pytest.raises(errors.NothingToPay):
        when(given(*history), pay(ORDER))


def test_paying_cancelled_order_is_rejected() -> None:
    with pytest.raises(errors.PaymentAfterCancellation):
        when(given(*WALKTHROUGH, cancel(ORDER)), pay(ORDER))


def test_paying_twice_is_rejected() -> None:
    with pytest.raises(errors.OrderAlreadyPaid):
        when(given(*WALKTHROUGH, pay(ORDER)), pay(ORDER))


# -- cancel ------------------------------------------------------------------------------


@pytest.mark.parametrize("history", [(create(ORDER),), WALKTHROUGH], ids=["empty", "with-items"])
def test_cancel_open_order(history: tuple[Command, ...]) -> None:
    order = given(*history)

    (event,) = when(order, cancel(ORDER, "changed my mind"))

    assert type(event) is OrderCancelled
    assert event.version == order.version + 1
    assert event.data() == {"reason": "changed my mind", "status": "cancelled"}
    cancelled = fold(order, [event])
    assert cancelled.status == "cancelled"
    assert cancelled.cancel_reason == "changed my mind"


def test_cancelling_paid_order_is_rejected() -> None:
    with pytest.raises(errors.CannotCancelPaidOrder):
        when(given(*WALKTHROUGH, pay(ORDER)), cancel(ORDER))


def test_cancelling_twice_is_rejected() -> None:
    with pytest.raises(errors.OrderAlreadyCancelled):
        when(given(create(ORDER), cancel(ORDER)), cancel(ORDER))


def test_rule_errors_are_domain_errors_with_a_message() -> None:
    with pytest.raises(errors.DomainError, match="order-001 is already paid"):
        when(given(*WALKTHROUGH, pay(ORDER)), pay(ORDER))


# -- metadata, ids, time -----------------------------------------------------------------


def test_event_metadata_names_the_command() -> None:
    command = add(ORDER)

    (event,) = when(given(create(ORDER)), command)

    assert event.metadata.command_id == command.command_id
    assert event.metadata.causation_id == command.command_id
    assert event.metadata.correlation_id == command.command_id


def test_event_metadata_keeps_the_given_correlation_id() -> None:
    command = add(ORDER, correlation_id="checkout-42")

    (event,) = when(given(create(ORDER)), command)

    assert event.metadata.correlation_id == "checkout-42"
    assert event.metadata.causation_id == command.command_id


def test_event_id_is_derived_from_the_command() -> None:
    order, command = given(create(ORDER)), add(ORDER)

    first = when(order, command)
    again = decide(order, command, at=NOW + timedelta(seconds=5))
    other = when(order, add(ORDER))

    assert uuid.UUID(first[0].event_id)
    assert first[0].event_id == again[0].event_id
    assert first[0].event_id != other[0].event_id


def test_event_timestamp_is_the_given_utc_time() -> None:
    at = datetime.now(UTC)

    (event,) = decide(Order(ORDER), create(ORDER), at=at)

    assert event.timestamp == at
    assert event.timestamp.utcoffset() == timedelta(0)


def test_events_are_immutable() -> None:
    (event,) = when(given(create(ORDER)), add(ORDER))

    with pytest.raises(dataclasses.FrozenInstanceError):
        event.version = 9  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.price = Decimal("0.01")  # type: ignore[misc]


def test_decide_does_not_change_the_order() -> None:
    order = given(*WALKTHROUGH)

    when(order, add(ORDER, "apple", 1))

    assert order == given(*WALKTHROUGH)
    assert order.lines["apple"].quantity == 3
