"""``orders send ...``: a producer on the command line."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import click

from commands import (
    AddItem,
    CancelOrder,
    Command,
    CreateOrder,
    InvalidCommand,
    Outcome,
    PayOrder,
    RemoveItem,
)
from commands.client import BrokerUnavailable, CommandClient, OutcomeTimeout
from commands.messages import new_command_id
from commands.transport import BrokerConfigError


def _common(fn: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--command-id", default=None, help="UUID; generated unless given."),
        click.option("--correlation-id", default=None),
        click.option("--expected-version", type=click.IntRange(min=0), default=None),
        click.option("--wait", is_flag=True, help="Wait for the outcome and print it."),
        click.option("--timeout", type=click.FloatRange(min=0.1), default=30.0, show_default=True),
        click.option(
            "--resend-every",
            type=click.FloatRange(min=0.1),
            default=None,
            help="With --wait: send the same command again every SECONDS without an outcome.",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _send(factory: Callable[..., Command], *args: Any, **options: Any) -> None:
    wait, timeout = options.pop("wait"), options.pop("timeout")
    resend_every = options.pop("resend_every")
    if resend_every is not None and not wait:
        raise click.UsageError("--resend-every needs --wait")
    options["command_id"] = options["command_id"] or new_command_id()
    try:
        command = factory(*args, **options)
    except InvalidCommand as invalid:
        raise click.BadParameter(invalid.reason, param_hint=invalid.field) from None
    try:
        client = CommandClient()
    except BrokerConfigError as unusable:
        raise click.UsageError(str(unusable)) from None
    try:
        receipt = client.send(command)
        click.echo(receipt.command_id)
        if wait:
            outcome = receipt.wait(timeout=timeout, resend_every=resend_every)
            _print_outcome(outcome)
            if not outcome.accepted:
                raise SystemExit(1)
    except (BrokerUnavailable, OutcomeTimeout) as error:
        raise click.ClickException(str(error)) from None
    finally:
        client.close()


def _print_outcome(outcome: Outcome) -> None:
    click.echo(json.dumps(outcome.to_dict(), indent=2))


@click.group()
def send() -> None:
    """Enqueue a command; prints its command id (and its outcome with --wait)."""


@send.command("create-order")
@click.argument("order_id")
@click.argument("customer_id")
@_common
def create_order(order_id: str, customer_id: str, **options: Any) -> None:
    _send(CreateOrder, order_id, customer_id, **options)


@send.command("add-item")
@click.argument("order_id")
@click.argument("item_id")
@click.argument("quantity", type=int)
@click.argument("price")
@_common
def add_item(order_id: str, item_id: str, quantity: int, price: str, **options: Any) -> None:
    """Add QUANTITY of ITEM_ID at PRICE (a decimal such as 1.50)."""
    _send(AddItem, order_id, item_id, quantity, price, **options)


@send.command("remove-item")
@click.argument("order_id")
@click.argument("item_id")
@_common
def remove_item(order_id: str, item_id: str, **options: Any) -> None:
    _send(RemoveItem, order_id, item_id, **options)


@send.command("pay-order")
@click.argument("order_id")
@click.argument("payment_method")
@_common
def pay_order(order_id: str, payment_method: str, **options: Any) -> None:
    _send(PayOrder, order_id, payment_method, **options)


@send.command("cancel-order")
@click.argument("order_id")
@click.argument("reason")
@_common
def cancel_order(order_id: str, reason: str, **options: Any) -> None:
    _send(CancelOrder, order_id, reason, **options)
