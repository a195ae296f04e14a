"""The walkthrough, through Redis and a real worker process, as a producer sees it."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from sqlalchemy import Engine

from commands import AddItem, CreateOrder, PayOrder
from commands.client import CommandClient
from domain.handler import load_order
from store import open_event_store
from tests.support.workers import WorkerProcess


def test_the_walkthrough_through_a_worker(
    start_worker: Callable[..., WorkerProcess], client: CommandClient, pg: Engine
) -> None:
    start_worker()
    commands = [
        CreateOrder("order-001", "customer-123"),
        AddItem("order-001", "apple", 3, Decimal("1.50")),
        AddItem("order-001", "banana", 2, Decimal("0.75")),
        PayOrder("order-001", "credit_card"),
    ]

    outcomes = [client.send(command).wait(timeout=30) for command in commands]

    assert [outcome.status for outcome in outcomes] == ["accepted"] * 4
    assert [outcome.version for outcome in outcomes] == [1, 2, 3, 4]
    assert str(load_order(open_event_store(pg), "order-001")) == (
        "Order(id=order-001, customer=customer-123, items=2, total=$6.00, status=paid, version=4)"
    )
    # Any process can ask later, by command id alone.
    assert client.outcome(commands[-1].command_id) == outcomes[-1]


def test_a_rejected_command_tells_the_producer_why(
    start_worker: Callable[..., WorkerProcess], client: CommandClient
) -> None:
    start_worker()
    client.send(CreateOrder("order-002", "customer-9")).wait(timeout=30)

    outcome = client.send(PayOrder("order-002", "card")).wait(timeout=30)

    assert outcome.status == "rejected"
    assert outcome.error == "NothingToPay"
    assert "nothing to pay" in (outcome.message or "")
