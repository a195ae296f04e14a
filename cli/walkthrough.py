"""The walkthrough's four examples, run through the real command path.

The commands have fixed ids, so a second run finds every outcome already recorded,
writes nothing and prints the same lines. Each "Loaded" line shows the Order as of the
version its command produced, not whatever happened to the order later.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

import click

from commands import AddItem, Command, CreateOrder, Outcome, PayOrder
from domain.events import Event
from domain.order import Order, fold

Send = Callable[[Command], Outcome]
LoadEvents = Callable[[str], list[Event]]

ORDER_ID = "order-001"
_DEMO = uuid.UUID("8f1d7a36-3c0e-4b8e-9d3e-6b0f5d1c2a77")


def _demo_id(step: str) -> str:
    return str(uuid.uuid5(_DEMO, step))


def _order_at(load_events: LoadEvents, outcome: Outcome) -> Order:
    events = [event for event in load_events(ORDER_ID) if event.version <= (outcome.version or 0)]
    return fold(Order(ORDER_ID), events)


def _expect_accepted(outcome: Outcome) -> Outcome:
    if not outcome.accepted:
        raise click.ClickException(
            f"command {outcome.command_id} was {outcome.status}: {outcome.error}: {outcome.message}"
        )
    return outcome


def run_demo(send: Send, load_events: LoadEvents) -> None:
    def dispatch(command: Command) -> Outcome:
        return _expect_accepted(send(command))

    click.echo("\n=== Example 1: Create Order ===")
    created = dispatch(CreateOrder(ORDER_ID, "customer-123", command_id=_demo_id("create")))
    click.echo(f"✓ Created order: {created.order_id}")
    click.echo(f"✓ Loaded: {_order_at(load_events, created)}")

    click.echo("\n=== Example 2: Add Items ===")
    dispatch(AddItem(ORDER_ID, "apple", 3, Decimal("1.50"), command_id=_demo_id("add-apple")))
    click.echo("✓ Added item: apple")
    banana = AddItem(ORDER_ID, "banana", 2, Decimal("0.75"), command_id=_demo_id("add-banana"))
    added = dispatch(banana)
    click.echo("✓ Added item: banana")
    click.echo(f"✓ Loaded: {_order_at(load_events, added)}")

    click.echo("\n=== Example 3: Pay Order ===")
    paid = dispatch(PayOrder(ORDER_ID, "credit_card", command_id=_demo_id("pay")))
    click.echo("✓ Order paid")
    click.echo(f"✓ Final state: {_order_at(load_events, paid)}")

    click.echo("\n=== Example 4: View History ===")
    click.echo(f"\nEvent History for {ORDER_ID}:")
    print_history([e for e in load_events(ORDER_ID) if e.version <= (paid.version or 0)])


def print_history(events: Sequence[Event], *, full: bool = False) -> None:
    """The walkthrough's history table; its data column shows the first field unless ``full``."""
    click.echo(f"{'Version':<10} {'Event Type':<20} {'Data'}")
    click.echo("-" * 70)
    for event in events:
        data = event.data()
        click.echo(f"{event.version:<10} {event.event_type:<20} {data if full else _brief(data)}")


def _brief(data: dict[str, Any]) -> str:
    key, value = next(iter(data.items()))
    more = ", ..." if len(data) > 1 else ""
    return f"{{{key!r}: {value!r}{more}}}"
