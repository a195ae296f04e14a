"""A producer's burst of commands, and the checks that every one got exactly one outcome.

``burst_of_commands`` makes a burst with contention on every order; a ``Producer`` sends
it in two parts, signalling between them so that ``restart_after`` can restart a server
mid-burst; a ``CountingClient`` counts what it published, resends included.

``send_all`` sends like a careful producer: a ``BrokerUnavailable`` is answered by
sending the same command again (its command id makes that safe). ``wait_all`` waits for
every outcome at once, resending what has none every ``resend_every`` seconds.
``assert_outcomes_match_the_log`` then holds each outcome against the command log and
the events: exactly one recorded outcome per command, equal to the one the producer
saw; the events of accepted commands only, once each; every order's versions 1..n.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

from sqlalchemy import Engine, select

from commands import AddItem, Command, CreateOrder, Outcome
from commands.client import BrokerUnavailable, CommandClient, Receipt
from store.schema import command_log, events

BURST = 5_000
ORDERS = 500


def send_all(client: CommandClient, commands: Sequence[Command], timeout: float) -> list[Receipt]:
    deadline = time.monotonic() + timeout
    receipts = []
    for command in commands:
        while True:
            try:
                receipts.append(client.send(command))
                break
            except BrokerUnavailable:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
    return receipts


def wait_all(
    receipts: Sequence[Receipt], *, timeout: float, resend_every: float | None, threads: int = 100
) -> dict[str, Outcome]:
    """Each command's outcome by command id; a command without one is left out.

    ``timeout`` bounds the whole wait, not each command's: the threads take the receipts
    a hundred at a time, and a per-receipt timeout would let a burst that lost its
    outcomes wait for hours before it fails."""
    deadline = time.monotonic() + timeout

    def wait(receipt: Receipt) -> tuple[str, Outcome | None]:
        left = max(deadline - time.monotonic(), 0.1)  # a last look for the stragglers
        try:
            return receipt.command_id, receipt.wait(timeout=left, resend_every=resend_every)
        except TimeoutError:
            return receipt.command_id, None

    with ThreadPoolExecutor(threads) as pool:
        found = dict(pool.map(wait, receipts))
    return {command_id: outcome for command_id, outcome in found.items() if outcome is not None}


def burst_of_commands(count: int = BURST, orders: int = ORDERS) -> list[Command]:
    """``orders`` new orders, then items added to them round-robin: contention on every
    order, and an ``AddItem`` may well arrive before its order exists (rejected then)."""
    commands: list[Command] = [
        CreateOrder(f"order-{n}", f"customer-{n % 37}") for n in range(orders)
    ]
    for index in range(count - orders):
        commands.append(
            AddItem(f"order-{index % orders}", f"item-{index}", 1 + index % 3, Decimal("2.50"))
        )
    return commands


def restart_after(sent: threading.Event, restart: Callable[[], None]) -> threading.Thread:
    """Run ``restart`` in a thread once ``sent`` is set (the producer's first part is out),
    so that the restart meets the burst in flight; join the thread before checking."""

    def run() -> None:
        sent.wait(120)
        restart()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


class CountingClient(CommandClient):
    """Counts the messages it publishes: more than the commands means it resent some."""

    published = 0

    def _publish(self, command_id: str, envelope: dict[str, object], budget: float) -> None:
        super()._publish(command_id, envelope, budget)  # type: ignore[arg-type]
        self.published += 1


class Producer:
    """Sends the burst and signals when its first part is out."""

    def __init__(self, client: CommandClient, commands: list[Command]) -> None:
        self.client = client
        self.commands = commands
        self.first_part_sent = threading.Event()

    def run(self, resend_every: float | None) -> dict[str, object]:
        split = len(self.commands) * 2 // 5
        receipts = send_all(self.client, self.commands[:split], timeout=120)
        self.first_part_sent.set()
        receipts += send_all(self.client, self.commands[split:], timeout=120)
        return wait_all(receipts, timeout=150, resend_every=resend_every)  # type: ignore[return-value]


def assert_outcomes_match_the_log(
    engine: Engine, commands: Sequence[Command], outcomes: dict[str, Outcome]
) -> Counter[str]:
    """Returns how many outcomes of each status there were."""
    missing = [c.command_id for c in commands if c.command_id not in outcomes]
    assert not missing, f"{len(missing)} of {len(commands)} commands have no outcome"
    with engine.connect() as conn:
        logged = {
            row.command_id: Outcome.from_dict(row.outcome)
            for row in conn.execute(select(command_log.c.command_id, command_log.c.outcome))
        }
        stored = conn.execute(
            select(
                events.c.aggregate_id,
                events.c.version,
                events.c.metadata["command_id"].as_string().label("command_id"),
            )
        ).all()
    wrong = [
        (command.command_id, outcomes[command.command_id], logged.get(command.command_id))
        for command in commands
        if logged.get(command.command_id) != outcomes[command.command_id]
    ]
    assert not wrong, f"{len(wrong)} outcomes differ from the command log, e.g. {wrong[:2]}"
    per_command = Counter(row.command_id for row in stored)
    for command in commands:
        outcome = outcomes[command.command_id]
        expected = len(outcome.events) if outcome.accepted else 0
        assert per_command[command.command_id] == expected, (command, outcome)
    versions: dict[str, list[int]] = defaultdict(list)
    for row in stored:
        versions[row.aggregate_id].append(row.version)
    for order, seen in versions.items():
        assert sorted(seen) == list(range(1, len(seen) + 1)), f"{order}: versions {sorted(seen)}"
    return Counter(outcome.status for outcome in outcomes.values())
