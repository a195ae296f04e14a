"""What every scenario does at its end: wait for every command to be decided, read
every outcome, and hold each against the command log and the events
(``assert_outcomes_match_the_log``: one outcome per command, the log's; the events of
accepted commands once each; every order's versions 1..n)."""

from __future__ import annotations

from commands import Command, Outcome
from commands.client import Receipt
from tests.scale.harness import Scenario
from tests.scale.load import wait_logged
from tests.support.burst import assert_outcomes_match_the_log, wait_all

DECIDE_WITHIN = 900.0  # a failure detector only: the machine is shared


def settle(scenario: Scenario, sent: list[Command], receipts: list[Receipt]) -> dict[str, Outcome]:
    """Every command decided, every outcome read, and all of it checked against the log."""
    wait_logged(scenario.engine, len(sent), timeout=DECIDE_WITHIN)
    outcomes = wait_all(receipts, timeout=120, resend_every=None)
    try:
        assert_outcomes_match_the_log(scenario.engine, sent, outcomes)
    except AssertionError:
        print(scenario.log_tails())
        raise
    return outcomes


def statuses(outcomes: dict[str, Outcome]) -> dict[str, int]:
    counts = {"accepted": 0, "rejected": 0, "failed": 0}
    for outcome in outcomes.values():
        counts[outcome.status] += 1
    return counts
