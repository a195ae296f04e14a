"""Load over the three worker hosts, and a slow, lossy link to the data host (issue 17,
"Many hosts, on this machine", scenarios 1 and 4). Hosts and checks: ``conftest.py``,
``checks.py``; the figures go to the run's summary (``make scale``)."""

from __future__ import annotations

import time

import pytest

from tests.scale.checks import settle, statuses
from tests.scale.figures import record
from tests.scale.harness import Scenario
from tests.scale.impairment import delay_line, lose_packets, packets_dropped, restore
from tests.scale.load import burst, dead_letters, decided_span
from tests.support.burst import send_all

pytestmark = [pytest.mark.scale, pytest.mark.timeout(1200)]

BURST = 2_000
DELAY_SECONDS = 0.05
LOSS_PERCENT = 5


def test_load_is_shared_by_the_three_hosts(scenario: Scenario) -> None:
    scenario.start_workers()
    sent = burst(seed=1, count=BURST)
    started = time.monotonic()
    receipts = send_all(scenario.client, sent, timeout=120)
    outcomes = settle(scenario, sent, receipts)
    per_host = scenario.per_host()
    span = decided_span(scenario.engine)
    record(
        "1. load shared",
        {
            "commands": len(sent),
            "outcomes": statuses(outcomes),
            "per_host": per_host,
            "dead_letters": dead_letters(scenario.engine),
            "decided_per_second": round(span.per_second, 1),
            "wall_seconds": round(time.monotonic() - started, 1),
        },
    )
    assert statuses(outcomes)["failed"] == 0
    # Each host took a real share, not a token one: at least a tenth of the commands.
    assert all(count >= len(sent) / 10 for count in per_host.values()), per_host


def test_a_slow_lossy_link_to_the_database_slows_that_host_and_fails_nothing(
    scenario: Scenario,
) -> None:
    slow, data = scenario.network["w3"], scenario.network["data"]
    local = {
        "database_url": scenario.database_url.replace(data.address, "127.0.0.1"),
        "redis_url": scenario.redis_url.replace(data.address, "127.0.0.1"),
    }
    routes = {5432: f"{data.address}:5432", 6379: f"{data.address}:6379"}
    with delay_line(slow, DELAY_SECONDS, routes):
        lose_packets(slow, LOSS_PERCENT)
        try:
            scenario.start_worker("w1")
            scenario.start_worker("w2")
            scenario.start_worker("w3", scenario.env(**local))
            for worker in scenario.workers.values():
                worker.wait_ready(timeout=180)
            sent = burst(seed=4, count=BURST)
            receipts = send_all(scenario.client, sent, timeout=120)
            outcomes = settle(scenario, sent, receipts)
            dropped = packets_dropped(slow)
        finally:
            scenario.workers["w3"].stop()
            restore(slow)
    per_host = scenario.per_host()
    span = decided_span(scenario.engine)
    record(
        "4. slow, lossy link on w3",
        {
            "commands": len(sent),
            "outcomes": statuses(outcomes),
            "per_host": per_host,
            "dead_letters": dead_letters(scenario.engine),
            "delay_ms": DELAY_SECONDS * 1000,
            "loss_percent": LOSS_PERCENT,
            "packets_dropped_on_w3": dropped,
            "decided_per_second": round(span.per_second, 1),
            "w3_per_second": round(per_host["w3"] / span.seconds, 2),
        },
    )
    assert dropped > 0, "the loss dropped nothing"
    assert statuses(outcomes)["failed"] == 0
    # That host's throughput dropped: it decided far fewer than either healthy host.
    assert per_host["w3"] < min(per_host["w1"], per_host["w2"]) / 2, per_host
