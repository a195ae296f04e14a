"""What an SQL event store holds: counting its rows, writing rows around the codec as an
old writer did, reading back everything the workers wrote, and the invariants every run
must keep."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, func, select

from commands import Outcome
from domain.events import Event
from domain.handler import load_order
from domain.order import Order, fold
from store import open_event_store
from store.codec import EVENT_COLUMNS, decode, stored_from_row
from store.schema import command_log, events, snapshots
from tests.support.events import FIXED_TIME
from tests.support.ids import new_id


def row_counts(engine: Engine) -> dict[str, int]:
    """How many rows each store table holds: compared before and after a failure."""
    with engine.connect() as conn:
        return {
            table.name: int(conn.execute(select(func.count()).select_from(table)).scalar_one())
            for table in (events, command_log, snapshots)
        }


def raw_event_row(
    order_id: str,
    version: int,
    event_type: str,
    data: Any,
    *,
    schema_version: int = 1,
    event_id: str | None = None,
) -> dict[str, Any]:
    """A row for ``store.schema.events`` written around the codec, as an old writer did."""
    return {
        "event_id": event_id or new_id(),
        "aggregate_type": "Order",
        "aggregate_id": order_id,
        "version": version,
        "event_type": event_type,
        "schema_version": schema_version,
        "data": data,
        "metadata": {},
        "recorded_at": FIXED_TIME,
    }


# -- what the workers left ----------------------------------------------------------------


@dataclass(frozen=True)
class Stored:
    """What the workers left in PostgreSQL."""

    events: list[Event]
    log: dict[str, dict[str, Any]]  # command_id -> command_log row
    log_rows: int

    def by_order(self) -> dict[str, list[Event]]:
        streams: dict[str, list[Event]] = defaultdict(list)
        for event in self.events:  # already ordered by (aggregate_id, version)
            streams[event.aggregate_id].append(event)
        return dict(streams)

    def events_per_command(self) -> Counter[str | None]:
        return Counter(event.metadata.command_id for event in self.events)


def read_store(pg: Engine) -> Stored:
    query = select(*(events.c[name] for name in EVENT_COLUMNS)).order_by(
        events.c.aggregate_id, events.c.version
    )
    with pg.connect() as conn:
        rows = conn.execute(query).mappings().all()
        log_rows = conn.execute(select(command_log)).mappings().all()
    log = {row["command_id"]: dict(row) for row in log_rows}
    decoded = [
        event for row in rows for event in decode(row["aggregate_id"], [stored_from_row(row)])
    ]
    return Stored(decoded, log, len(log_rows))


def assert_contiguous_versions(stored: Stored) -> None:
    for order_id, stream in stored.by_order().items():
        versions = [event.version for event in stream]
        assert versions == list(range(1, len(stream) + 1)), f"{order_id}: versions {versions}"


def assert_state_is_the_fold(pg: Engine, stored: Stored) -> dict[str, Order]:
    """For each order: the handler's view (snapshot + events) equals the plain fold."""
    store = open_event_store(pg)
    folded = {}
    for order_id, stream in stored.by_order().items():
        replayed = fold(Order(order_id), stream)
        assert load_order(store, order_id) == replayed, order_id
        folded[order_id] = replayed
    return folded


def assert_each_accepted_command_appended_once(
    stored: Stored, outcomes: Mapping[str, Outcome]
) -> None:
    """Accepted outcomes and events match one to one, through metadata.command_id,
    and each event sits at the version its outcome reported."""
    per_command = stored.events_per_command()
    twice = {command_id: n for command_id, n in per_command.items() if n != 1}
    assert not twice, f"commands with more than one event: {twice}"
    accepted = {task_id for task_id, outcome in outcomes.items() if outcome.accepted}
    with_events = {str(command_id) for command_id in per_command}
    assert None not in per_command, "an event without a command id"
    assert with_events == accepted, (
        f"events without an accepted outcome: {sorted(with_events - accepted)[:5]}; "
        f"accepted outcomes without an event: {sorted(accepted - with_events)[:5]}"
    )
    assert len(stored.events) == len(accepted)
    for event in stored.events:
        outcome = outcomes[event.metadata.command_id or ""]
        assert (outcome.order_id, outcome.version, outcome.events) == (
            event.aggregate_id,
            event.version,
            (event.event_type,),
        ), (outcome, event)


def assert_one_log_row_per_command(
    stored: Stored, outcomes: Mapping[str, Outcome], task_ids: Iterable[str]
) -> None:
    """Exactly one command_log row per command, holding the outcome the producer got."""
    expected = set(task_ids)
    assert stored.log_rows == len(stored.log)  # command_id is the primary key
    assert set(stored.log) == expected, (
        f"missing rows: {sorted(expected - set(stored.log))[:5]}; "
        f"unexpected rows: {sorted(set(stored.log) - expected)[:5]}"
    )
    for command_id in expected:
        row = stored.log[command_id]
        assert Outcome.from_dict(row["outcome"]) == outcomes[command_id], command_id
        assert row["status"] == outcomes[command_id].status
