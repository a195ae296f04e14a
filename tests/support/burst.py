"""A producer's burst of commands, and the checks that every one got exactly one outcome.

``send_all`` sends like a careful producer: a ``BrokerUnavailable`` is answered by
sending the same command again (its command id makes that safe). ``wait_all`` waits for
every outcome at once, resending what has none every ``resend_every`` seconds.
``assert_outcomes_match_the_log`` then holds each outcome against the command log and
the events: exactly one recorded outcome per command, equal to the one the producer
saw; the events of accepted commands only, once each; every order's versions 1..n.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import Engine, select

from commands import Command, Outcome
from commands.client import BrokerUnavailable, CommandClient, Receipt
from store.schema import command_log, events


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
