"""The database-limit benchmark (``benchmarks/database_limit.py``) on a cluster of its
own, at a tiny size: it runs, and the per-command figures that do not depend on the
machine are what docs/scaling.md says they are."""

from __future__ import annotations

import pytest

from benchmarks.database_limit import BATCH, UNPREPARED, measure, private_cluster

pytestmark = pytest.mark.postgres


def test_a_command_costs_two_round_trips_alone_and_shares_a_commit_in_a_batch() -> None:
    with private_cluster() as cluster:
        single = measure(cluster, "single", "on", threads=2, orders=2 * BATCH)
        batch = measure(cluster, "batch", "off", threads=2, orders=2 * BATCH)
        unprepared = measure(cluster, UNPREPARED, "on", threads=2, orders=2 * BATCH)

    for figures in (single, batch, unprepared):
        assert figures.commands == 8 * BATCH  # four commands an order
        assert figures.wal_bytes_per_command > 500  # an event, its indexes, the outcome
        assert figures.server_cpu_us_per_command > 0
    # Alone: read in one statement, write (and commit) in one statement.
    assert single.round_trips_per_command == unprepared.round_trips_per_command == 2
    assert single.statements_per_command == unprepared.statements_per_command == 2
    # Every command commits alone; in a batch, BATCH commands share one BEGIN, one read,
    # one group write (its savepoint sent with it) and one commit: four round trips.
    # (Autovacuum may commit too.)
    assert 1 <= single.commits_per_s / single.commands_per_s <= 1.1
    assert batch.round_trips_per_command == pytest.approx(4 / BATCH)
    assert batch.commits_per_s / batch.commands_per_s <= 1.5 / BATCH
