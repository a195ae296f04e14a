"""Throughput with 1, 2 and 3 worker hosts, each one ``orders worker --concurrency 2``
(issue 17), and where the CPU went: the hosts share this machine's two cores."""

from __future__ import annotations

import time

import pytest

from tests.scale.checks import DECIDE_WITHIN, settle, statuses
from tests.scale.cpu import CpuSample, cores_used
from tests.scale.figures import record
from tests.scale.harness import WORKER_HOSTS, Scenario
from tests.scale.load import burst, dead_letters, decided_span, wait_logged
from tests.support.burst import send_all

pytestmark = [pytest.mark.scale, pytest.mark.timeout(1200)]

THROUGHPUT_BURST = 3_000


@pytest.mark.parametrize("hosts", [1, 2, 3])
def test_throughput_with_one_two_and_three_worker_hosts(scenario: Scenario, hosts: int) -> None:
    """The queue is filled while the workers are frozen, then they drain it: the rate is
    the workers', not the producer's (the command log's first to last record)."""
    names = WORKER_HOSTS[:hosts]
    scenario.start_workers(names)
    for name in names:
        scenario.network[name].freeze()
    try:
        sent = burst(seed=10 + hosts, count=THROUGHPUT_BURST)
        receipts = send_all(scenario.client, sent, timeout=120)
    finally:
        measured = [scenario.network[name] for name in ("data", *names, "producer")]
        before, started = CpuSample.take(measured), time.monotonic()
        for name in names:
            scenario.network[name].thaw()
    wait_logged(scenario.engine, len(sent), timeout=DECIDE_WITHIN)
    cores = cores_used(before, CpuSample.take(measured), time.monotonic() - started)
    outcomes = settle(scenario, sent, receipts)
    span = decided_span(scenario.engine)
    record(
        f"throughput, {hosts} worker host(s) x --concurrency 2",
        {
            "commands": len(sent),
            "outcomes": statuses(outcomes),
            "per_host": scenario.per_host(),
            "dead_letters": dead_letters(scenario.engine),
            "seconds": round(span.seconds, 1),
            "decided_per_second": round(span.per_second, 1),
            "cores_used": cores,
        },
    )
    assert statuses(outcomes)["failed"] == 0
