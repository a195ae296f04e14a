"""Pruning the command log and the dead letters by age (``store/retention.py`` and
``orders prune``), on PostgreSQL and SQLite: old rows go in batches, new rows stay, the
task ids of pruned commands go with them, and events are never touched."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, Table, select

from cli.main import cli
from store import build_engine, open_event_store
from store.retention import Pruned, count, days_ago, prune
from store.schema import command_log, command_task_ids, dead_letters, events, only_on
from tests.support.cli import orders
from tests.support.events import created, item_added
from tests.support.ids import new_id

NOW = datetime.now(UTC)
OLD = NOW - timedelta(days=40)
NEW = NOW - timedelta(days=10)
CUTOFF = days_ago(30, NOW)
OLD_COMMANDS, NEW_COMMANDS, OLD_LETTERS, NEW_LETTERS = 50, 5, 20, 3


class Seeded:
    """What ``seed`` wrote: the ids that must go and those that must stay."""

    def __init__(self) -> None:
        self.old_commands: list[str] = []
        self.new_commands: list[str] = []


def command_row(command_id: str, recorded_at: datetime) -> dict[str, Any]:
    outcome = {"command_id": command_id, "status": "accepted", "order_id": "order-1"}
    return {
        "command_id": command_id,
        "command_type": "AddItem",
        "aggregate_id": "order-1",
        "status": "accepted",
        "outcome": outcome,
        "recorded_at": recorded_at,
        "fingerprint": None,
    }


def letter_row(recorded_at: datetime) -> dict[str, Any]:
    return {"source": "test", "reason": "unreadable", "body": "{", "recorded_at": recorded_at}


def seed(engine: Engine) -> Seeded:
    """Old and new command-log rows, each command with a task id; old and new dead
    letters; and two orders' events, some recorded long before the cutoff."""
    seeded = Seeded()
    commands, task_ids, letters = [], [], []
    for index in range(OLD_COMMANDS + NEW_COMMANDS):
        command_id = new_id()
        old = index < OLD_COMMANDS
        (seeded.old_commands if old else seeded.new_commands).append(command_id)
        # Spread in time, so a batch's ORDER BY recorded_at has something to order.
        at = (OLD if old else NEW) - timedelta(minutes=index)
        commands.append(command_row(command_id, at))
        task_ids.append({"task_id": new_id(), "command_id": command_id})
    for index in range(OLD_LETTERS + NEW_LETTERS):
        letters.append(letter_row((OLD if index < OLD_LETTERS else NEW) - timedelta(seconds=index)))
    with engine.begin() as conn:
        conn.execute(command_log.insert(), commands)
        conn.execute(command_task_ids.insert(), task_ids)
        conn.execute(dead_letters.insert(), letters)
    store = open_event_store(engine)
    for order in ("order-1", "order-2"):
        store.append(order, 0, [created(order, at=OLD), item_added(order, 2, at=OLD)])
    return seeded


def rows(engine: Engine, table: Table) -> list[tuple[Any, ...]]:
    """Every row, every column the database has (``events.transaction_id``: PostgreSQL)."""
    with engine.connect() as conn:
        columns = [c for c in table.c if only_on(c) in (None, conn.dialect.name)]
        query = select(*columns).order_by(*table.primary_key)
        return [tuple(row) for row in conn.execute(query)]


def column(engine: Engine, table: Table, name: str) -> set[Any]:
    with engine.connect() as conn:
        return set(conn.execute(select(table.c[name])).scalars())


@pytest.fixture
def seeded(engine: Engine) -> Seeded:
    return seed(engine)


# -- store.retention ----------------------------------------------------------------------


def test_old_rows_go_new_rows_stay_and_events_are_untouched(engine: Engine, seeded: Seeded) -> None:
    events_before = rows(engine, events)
    new_letters = rows(engine, dead_letters)[OLD_LETTERS:]  # by id: the old ones first

    pruned = prune(engine, command_log_before=CUTOFF, dead_letters_before=CUTOFF)

    assert pruned == Pruned(OLD_COMMANDS, OLD_COMMANDS, OLD_LETTERS)
    assert column(engine, command_log, "command_id") == set(seeded.new_commands)
    assert column(engine, command_task_ids, "command_id") == set(seeded.new_commands)
    assert rows(engine, dead_letters) == new_letters
    assert len(events_before) == 4
    assert rows(engine, events) == events_before


def test_batches_smaller_than_the_rows_still_delete_them_all(
    engine: Engine, seeded: Seeded
) -> None:
    told: list[int] = []

    pruned = prune(
        engine,
        command_log_before=CUTOFF,
        dead_letters_before=CUTOFF,
        batch_size=7,
        progress=told.append,
    )

    # 50 commands in 7 batches of 7 and one of 1, then 20 letters in 7, 7 and 6.
    assert told == [7] * 7 + [1] + [7, 7, 6]
    assert sum(told) == pruned.progress_total == OLD_COMMANDS + OLD_LETTERS
    assert column(engine, command_log, "command_id") == set(seeded.new_commands)
    assert len(rows(engine, dead_letters)) == NEW_LETTERS
    assert prune(engine, command_log_before=CUTOFF, dead_letters_before=CUTOFF) == Pruned()


def test_a_dry_run_counts_and_deletes_nothing(engine: Engine, seeded: Seeded) -> None:
    before = {table.name: rows(engine, table) for table in (command_log, command_task_ids)}
    letters_before = rows(engine, dead_letters)

    counted = prune(engine, command_log_before=CUTOFF, dead_letters_before=CUTOFF, dry_run=True)

    assert counted == Pruned(OLD_COMMANDS, OLD_COMMANDS, OLD_LETTERS, dry_run=True)
    assert counted == count(engine, command_log_before=CUTOFF, dead_letters_before=CUTOFF)
    assert {table.name: rows(engine, table) for table in (command_log, command_task_ids)} == before
    assert rows(engine, dead_letters) == letters_before


def test_a_table_without_a_cutoff_is_left_alone(engine: Engine, seeded: Seeded) -> None:
    letters_before = rows(engine, dead_letters)

    pruned = prune(engine, command_log_before=CUTOFF)

    assert pruned == Pruned(command_log=OLD_COMMANDS, task_ids=OLD_COMMANDS)
    assert rows(engine, dead_letters) == letters_before
    assert prune(engine, dead_letters_before=CUTOFF).dead_letters == OLD_LETTERS
    assert column(engine, command_log, "command_id") == set(seeded.new_commands)


def test_a_batch_size_out_of_range_and_a_retention_under_a_day_are_refused(
    engine: Engine,
) -> None:
    with pytest.raises(ValueError, match="batch_size"):
        prune(engine, command_log_before=CUTOFF, batch_size=0)
    with pytest.raises(ValueError, match="batch_size"):
        prune(engine, command_log_before=CUTOFF, batch_size=10_001)
    with pytest.raises(ValueError, match="at least 1 day"):
        days_ago(0)


@pytest.fixture
def impatient(pg: Engine, postgres_url: str) -> Iterator[Engine]:
    """An engine on the same database that gives up waiting for a lock after 5 s."""
    engine = build_engine(postgres_url, connect_args={"options": "-c lock_timeout=5000"})
    yield engine
    engine.dispose()


def test_on_postgres_a_row_a_writer_holds_is_skipped_not_waited_for(
    pg: Engine, impatient: Engine
) -> None:
    seeded = seed(pg)
    held = seeded.old_commands[0]
    with pg.connect() as writer, writer.begin() as transaction:
        locked = select(command_log.c.command_id).where(command_log.c.command_id == held)
        writer.execute(locked.with_for_update())

        pruned = prune(impatient, command_log_before=CUTOFF, batch_size=7)

        assert pruned.command_log == OLD_COMMANDS - 1
        transaction.rollback()
    assert column(pg, command_log, "command_id") == {held, *seeded.new_commands}
    assert prune(impatient, command_log_before=CUTOFF).command_log == 1


# -- orders prune -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ([], "give --command-log-days, --dead-letters-days, or both"),
        (["--dry-run"], "give --command-log-days, --dead-letters-days, or both"),
        (["--command-log-days", "0"], "0 is not in the range x>=1"),
        (["--dead-letters-days", "-3"], "-3 is not in the range x>=1"),
        (["--command-log-days", "ten"], "'ten' is not a valid integer"),
        (["--command-log-days", "30", "--batch-size", "0"], "0 is not in the range 1<=x<=10000"),
    ],
)
def test_prune_refuses_bad_arguments(arguments: list[str], message: str) -> None:
    result = CliRunner().invoke(cli, ["prune", *arguments], prog_name="orders")

    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_orders_prune_on_postgres_counts_then_deletes(pg: Engine, postgres_url: str) -> None:
    seeded = seed(pg)
    env = {"ORDERS_DATABASE_URL": postgres_url}
    options = ["--command-log-days", "30", "--dead-letters-days", "30", "--batch-size", "7"]

    dry = orders("prune", *options, "--dry-run", env=env)

    assert dry.returncode == 0, dry.stderr
    assert "would delete 50 command-log row(s) and 50 task id(s) recorded before" in dry.stdout
    assert "would delete 20 dead letter(s) recorded before" in dry.stdout
    assert len(rows(pg, command_log)) == OLD_COMMANDS + NEW_COMMANDS

    done = orders("prune", *options, env=env)

    assert done.returncode == 0, done.stderr
    assert "deleted 50 command-log row(s) and 50 task id(s) recorded before" in done.stdout
    assert "deleted 20 dead letter(s) recorded before" in done.stdout
    assert column(pg, command_log, "command_id") == set(seeded.new_commands)
    assert len(rows(pg, dead_letters)) == NEW_LETTERS
    assert len(rows(pg, events)) == 4


def test_orders_prune_of_the_command_log_alone_on_sqlite(tmp_path: Any) -> None:
    env = {"ORDERS_DATABASE_URL": f"sqlite:///{tmp_path / 'orders.db'}"}
    assert orders("migrate", env=env).returncode == 0
    engine = build_engine(env["ORDERS_DATABASE_URL"])
    try:
        seeded = seed(engine)

        done = orders("prune", "--command-log-days", "30", env=env)

        assert done.returncode == 0, done.stderr
        assert "deleted 50 command-log row(s) and 50 task id(s)" in done.stdout
        assert "dead letter" not in done.stdout
        assert column(engine, command_log, "command_id") == set(seeded.new_commands)
        assert len(rows(engine, dead_letters)) == OLD_LETTERS + NEW_LETTERS
    finally:
        engine.dispose()
