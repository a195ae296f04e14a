"""``orders send`` as a producer on the command line, against a real worker."""

from __future__ import annotations

import json
from collections.abc import Callable

from sqlalchemy import Engine

from commands import CreateOrder, PayOrder
from commands.client import CommandClient
from store import open_event_store
from tests.support.cli import orders
from tests.support.workers import WorkerProcess


def test_send_wait_with_resend_every_prints_the_outcome(
    start_worker: Callable[..., WorkerProcess], redis_url: str, pg: Engine
) -> None:
    start_worker()
    env = {"ORDERS_BROKER_URL": redis_url}

    done = orders(
        "send", "create-order", "order-cli", "customer-1", "--wait", "--resend-every", "1", env=env
    )

    assert done.returncode == 0, done.stderr
    command_id, *printed = done.stdout.splitlines()
    outcome = json.loads("\n".join(printed))
    assert outcome["status"] == "accepted"
    assert outcome["command_id"] == command_id
    assert open_event_store(pg).latest_version("order-cli") == 1


def test_a_command_id_reused_for_another_command_is_refused(
    start_worker: Callable[..., WorkerProcess],
    client: CommandClient,
    redis_url: str,
    pg: Engine,
) -> None:
    # Before: the CLI printed the old "accepted OrderPaid" and order-10 was never made.
    start_worker()
    assert client.send(CreateOrder("order-9", "customer-1")).wait(timeout=30).accepted
    pay = PayOrder("order-9", "card")
    first = client.send(pay).wait(timeout=30)
    assert first.status == "rejected"  # nothing to pay, and recorded as such

    done = orders(
        "send",
        "create-order",
        "order-10",
        "customer-1",
        "--command-id",
        pay.command_id,
        "--wait",
        env={"ORDERS_BROKER_URL": redis_url},
    )

    assert done.returncode == 1, done.stderr
    outcome = json.loads("\n".join(done.stdout.splitlines()[1:]))
    assert (outcome["status"], outcome["error"]) == ("rejected", "CommandIdReused")
    assert outcome["order_id"] == "order-10"
    store = open_event_store(pg)
    assert store.latest_version("order-10") == 0
    assert store.find_outcome(pay.command_id) == first
