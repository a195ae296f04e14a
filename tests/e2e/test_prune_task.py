"""``orders.prune`` (what beat sends daily when ORDERS_RETENTION_DAYS is set), run by a
real worker: old command-log rows, their task ids and old dead letters go; events stay.
And what the README warns of: a command whose row was pruned is decided again if resent."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, Table, func, select, update

from commands.client import CommandClient
from commands.transport import PROJECTIONS_QUEUE
from store import open_event_store
from store.schema import command_log, command_task_ids, dead_letters, events
from tests.support.commands import add, create
from tests.support.ids import new_id
from tests.support.waiting import eventually
from tests.support.workers import WorkerProcess
from workers.tasks import PRUNE

LONG_AGO = datetime.now(UTC) - timedelta(days=40)


def count(engine: Engine, table: Table) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def test_a_worker_prunes_what_is_older_than_the_days_it_is_sent(
    start_worker: Callable[..., WorkerProcess], client: CommandClient, pg: Engine
) -> None:
    start_worker()
    store = open_event_store(pg)
    created, added, too_early = create("order-old"), add("order-old"), add("order-late")
    for command in (created, added, too_early, create("order-late")):
        client.send(command).wait(timeout=30)
    first = store.find_outcome(too_early.command_id)
    assert first is not None and first.status == "rejected"
    old_ids = [created.command_id, added.command_id, too_early.command_id]
    with pg.begin() as conn:
        # Three commands and a dead letter recorded long ago; one came under another task id.
        aged = update(command_log).where(command_log.c.command_id.in_(old_ids))
        conn.execute(aged.values(recorded_at=LONG_AGO))
        conn.execute(command_task_ids.insert().values(task_id=new_id(), command_id=old_ids[0]))
        letter = {"source": "test", "reason": "unreadable", "body": "{", "recorded_at": LONG_AGO}
        conn.execute(dead_letters.insert(), [letter, {**letter, "recorded_at": datetime.now(UTC)}])
    events_before = count(pg, events)

    sent = client._app.send_task(PRUNE, kwargs={"days": 30}, queue=PROJECTIONS_QUEUE)

    assert sent.get(timeout=30) == {"command_log": 3, "task_ids": 1, "dead_letters": 1}
    with pg.connect() as conn:
        remaining = set(conn.execute(select(command_log.c.command_id)).scalars())
    assert remaining.isdisjoint(old_ids) and len(remaining) == 1
    assert count(pg, command_task_ids) == 0
    assert count(pg, dead_letters) == 1
    assert count(pg, events) == events_before == 3


def test_a_command_resent_after_its_row_was_pruned_is_decided_again(
    start_worker: Callable[..., WorkerProcess], client: CommandClient, pg: Engine
) -> None:
    # What the README warns of: the command log no longer answers for such a command.
    start_worker()
    store = open_event_store(pg)
    added, too_early = add("order-old"), add("order-late")
    for command in (create("order-old"), added, too_early, create("order-late")):
        client.send(command).wait(timeout=30)
    with pg.begin() as conn:
        conn.execute(update(command_log).values(recorded_at=LONG_AGO))
    sent = client._app.send_task(PRUNE, kwargs={"days": 30}, queue=PROJECTIONS_QUEUE)
    assert sent.get(timeout=30)["command_log"] == 4

    client.send(too_early)
    client.send(added)

    # Rejected the first time (no such order yet), applied now.
    assert eventually(lambda: store.latest_version("order-late"), lambda v: v == 2) == 2
    # Accepted the first time: its events cannot be appended twice (their ids derive from
    # the command id), but it is answered failed, not with its first outcome.
    again = eventually(lambda: store.find_outcome(added.command_id), lambda o: o is not None)
    assert again is not None and again.status == "failed"
    assert store.latest_version("order-old") == 2
