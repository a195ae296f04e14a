"""The event store contract on SQLite and PostgreSQL, and what only an SQL store can be
asked: a reused event id, rows written around the codec, migrations.

The contract itself is ``tests.support.contract.EventStoreContract``, shared with the
in-memory fake (tests/unit/test_fake_event_store.py). The SQL-only tests below run
against both backends (fixture ``engine``).
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError

from bootstrap import MIGRATIONS, migrate
from domain.errors import UnknownEventType
from domain.events import ItemAdded, OrderCreated
from domain.handler import load_order
from store import SqlEventStore, open_event_store
from store.migrate import current_revision
from store.schema import events
from tests.support.commands import ORDER
from tests.support.contract import Counts, EventStoreContract, accepted
from tests.support.events import created, item_added
from tests.support.ids import new_id
from tests.support.store import raw_event_row, row_counts


class TestSqliteEventStore(EventStoreContract):
    @pytest.fixture
    def store(self, sqlite: Engine) -> SqlEventStore:
        return open_event_store(sqlite)

    @pytest.fixture
    def stored_counts(self, sqlite: Engine) -> Counts:
        return lambda: row_counts(sqlite)


class TestPostgresEventStore(EventStoreContract):
    @pytest.fixture
    def store(self, pg: Engine) -> SqlEventStore:
        return open_event_store(pg)

    @pytest.fixture
    def stored_counts(self, pg: Engine) -> Counts:
        return lambda: row_counts(pg)


# -- what only an SQL store can be asked -------------------------------------------------


@pytest.fixture
def store(engine: Engine) -> SqlEventStore:
    return open_event_store(engine)


def test_a_batch_that_fails_on_its_last_event_writes_nothing(
    store: SqlEventStore, engine: Engine
) -> None:
    first = created(ORDER)
    store.append(ORDER, 0, [first])
    before = row_counts(engine)
    command_id = new_id()
    batch = [
        item_added(ORDER, 2, item_id="apple"),
        item_added(ORDER, 3, item_id="banana"),
        # Reuses the id of the stored OrderCreated: the INSERT fails on events.event_id.
        item_added(ORDER, 4, item_id="cherry", event_id=first.event_id),
    ]

    # A reused event id is a caller bug, not a lost race: it surfaces as itself, so the
    # handler does not retry it. And nothing of the batch is kept.
    with pytest.raises(IntegrityError):
        store.append(
            ORDER,
            1,
            batch,
            command_type="AddItem",
            outcome=accepted(command_id, 4, "ItemAdded", "ItemAdded", "ItemAdded"),
        )

    assert store.load(ORDER) == [first]
    assert store.latest_version(ORDER) == 1
    assert store.find_outcome(command_id) is None
    assert row_counts(engine) == before


# -- stored shapes: upcasting and unknown types ------------------------------------------


def test_an_old_item_added_is_upcast_on_load_and_never_rewritten(
    store: SqlEventStore, engine: Engine
) -> None:
    old_data = {"item_id": "apple", "quantity": 3, "price": 1.5}
    rows = [
        raw_event_row(ORDER, 1, "OrderCreated", {"customer_id": "customer-123"}),
        raw_event_row(ORDER, 2, "ItemAdded", old_data, schema_version=1),
    ]
    with engine.begin() as conn:
        conn.execute(events.insert(), rows)

    def stored() -> list[tuple[object, ...]]:
        query = select(events.c.event_type, events.c.schema_version, events.c.data).order_by(
            events.c.position
        )
        with engine.connect() as conn:
            return [tuple(row) for row in conn.execute(query)]

    before = stored()
    loaded = store.load(ORDER)

    assert isinstance(loaded[0], OrderCreated)
    assert isinstance(loaded[1], ItemAdded)
    assert loaded[1].price == Decimal("1.50")
    assert str(loaded[1].price) == "1.50"
    assert (loaded[1].item_id, loaded[1].quantity) == ("apple", 3)
    assert loaded[1].data() == {"item_id": "apple", "quantity": 3, "price": "1.50"}
    assert stored() == before
    assert before[1] == ("ItemAdded", 1, old_data)
    assert load_order(store, ORDER).total == Decimal("4.50")


def test_an_unknown_stored_event_type_raises_on_load(store: SqlEventStore, engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(
            events.insert(),
            [
                raw_event_row(ORDER, 1, "OrderCreated", {"customer_id": "customer-123"}),
                raw_event_row(ORDER, 2, "OrderShipped", {"carrier": "ups"}),
            ],
        )

    with pytest.raises(UnknownEventType) as unknown:
        store.load(ORDER)
    assert unknown.value.event_type == "OrderShipped"
    # Only the events past the unknown one can be read around it.
    assert store.load(ORDER, after_version=2) == []


# -- migrations ---------------------------------------------------------------------------


def scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(MIGRATIONS.config())


def head_revision() -> str:
    head = scripts().get_current_head()
    assert head is not None
    return head


def applied_revisions() -> set[str]:
    return {script.revision for script in scripts().walk_revisions()}


def test_migrate_twice_is_a_no_op(store: SqlEventStore, engine: Engine) -> None:
    store.append(ORDER, 0, [created(ORDER)])
    before = row_counts(engine)

    migrate(engine)
    migrate(engine)

    # The newest revision the code ships (0001 when written; later ones build on it).
    assert current_revision(engine) == head_revision()
    assert "0001" in applied_revisions()
    assert row_counts(engine) == before
    assert [e.version for e in store.load(ORDER)] == [1]
