"""Behind PgBouncer in transaction mode: what breaks and what the code does about it.

A client's server connection is its own only for one transaction there; the next one may
get another. Session state then goes astray: a ``PREPARE``d statement (the store
prepares its two hot statements once per connection) is missing on the next server
connection, and a session-level advisory lock would stay with a server connection the
client no longer has. The store sends its statements whole with
``ORDERS_PREPARED_STATEMENTS=off``; the rebuild takes and lets go of its locks in one
transaction. ``make test-pgbouncer`` runs the end-to-end suite this way.

Each test has a PgBouncer of its own with two server connections at most, so that which
server connection a client gets is not left to chance: while another client holds the
only one open so far in a transaction, the next transaction gets a new one.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg2
import pytest
from sqlalchemy import Connection, Engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from bootstrap import Settings, bootstrap
from bootstrap.services import order_history
from commands import AddItem, CreateOrder
from domain.handler import CommandHandler
from readmodels import maintenance
from readmodels.maintenance import rebuild
from readmodels.projections import PROJECTIONS
from store import build_engine, open_event_store, open_global_log
from store.postgres.driver import without_prepared_statements
from tests.support.pgbouncer import PgBouncer

pytestmark = pytest.mark.postgres


@pytest.fixture
def bouncer(postgres_url: str) -> Iterator[PgBouncer]:
    server = make_url(postgres_url)
    bouncer = PgBouncer(server.host or "127.0.0.1", server.port or 5432, pool_size=2).start()
    yield bouncer
    bouncer.stop()


@pytest.fixture
def pooled(bouncer: PgBouncer, postgres_url: str, pg: Engine) -> Iterator[Engine]:
    """An engine reaching the run's database through ``bouncer``: one client connection."""
    engine = build_engine(bouncer.url_for(postgres_url), pool_size=1, max_overflow=0)
    yield engine
    engine.dispose()


class OtherClient:
    """Another client of the pooler, holding a server connection in a transaction."""

    def __init__(self, bouncer: PgBouncer, database: str) -> None:
        self.connection = psycopg2.connect(
            host="127.0.0.1", port=bouncer.port, user="postgres", dbname=database
        )

    def __enter__(self) -> OtherClient:
        with self.connection.cursor() as cursor:
            cursor.execute("SELECT 1")  # psycopg2 opens a transaction first: it stays open
        return self

    def __exit__(self, *_: object) -> None:
        self.connection.rollback()
        self.connection.close()


def new_order(handler: CommandHandler) -> str:
    order_id = f"o-{uuid.uuid4()}"
    assert handler.handle(CreateOrder(order_id, "customer-1")).accepted
    return order_id


def servers(bouncer: PgBouncer, database: str) -> int:
    return sum(1 for row in bouncer.admin("SHOW SERVERS") if row["database"] == database)


def test_prepared_statements_go_astray_in_transaction_mode(
    pooled: Engine, bouncer: PgBouncer
) -> None:
    """The limitation: with its statements prepared (the default), the store fails as
    soon as a statement lands on a server connection that did not prepare it."""
    database = str(pooled.url.database)
    handler = CommandHandler(open_event_store(pooled))
    order_id = new_order(handler)  # prepared on the only server connection there is

    with OtherClient(bouncer, database), pytest.raises(DBAPIError) as failed:
        handler.handle(AddItem(order_id, "apple", 1, "1.50"))

    assert "prepared statement" in str(failed.value) and "does not exist" in str(failed.value)
    assert servers(bouncer, database) == 2


def test_without_prepared_statements_every_server_connection_serves(
    pooled: Engine, bouncer: PgBouncer
) -> None:
    database = str(pooled.url.database)
    handler = CommandHandler(open_event_store(without_prepared_statements(pooled)))
    order_id = new_order(handler)

    with OtherClient(bouncer, database):
        assert handler.handle(AddItem(order_id, "apple", 1, "1.50")).accepted
        outcomes = handler.handle_many(
            [AddItem(order_id, "pear", 2, "2.00"), CreateOrder(f"o-{uuid.uuid4()}", "c-2")]
        )
    outcomes += handler.handle_many([AddItem(order_id, "plum", 1, "0.50")])

    assert all(outcome.accepted for outcome in outcomes), outcomes
    assert servers(bouncer, database) == 2  # it did change server connections


def test_the_setting_turns_prepared_statements_off(bouncer: PgBouncer, postgres_url: str) -> None:
    settings = Settings(
        database_url=bouncer.url_for(postgres_url),
        broker_url="memory://",
        prepared_statements=False,
    )
    assert Settings.from_env({"ORDERS_PREPARED_STATEMENTS": "off"}).prepared_statements is False
    services = bootstrap(settings)
    try:
        database = str(services.engine.url.database)
        order_id = new_order(services.handler)
        with OtherClient(bouncer, database):
            assert services.handler.handle(AddItem(order_id, "apple", 1, "1.50")).accepted
    finally:
        services.close()


def test_a_rebuild_through_the_pooler_leaves_no_lock_behind(
    bouncer: PgBouncer, postgres_url: str, pg: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its locks are taken and let go in one transaction, so on one server connection.
    Here another client starts a transaction just before the rebuild lets go, taking the
    server connection freed last: were the locks let go in a transaction of their own,
    that would land on another server connection, where the unlock does nothing, and
    the locks would stay held, every projection run on that server connection finding
    them busy forever."""
    engine = without_prepared_statements(build_engine(bouncer.url_for(postgres_url)))
    others: list[OtherClient] = []
    let_go = maintenance.release_lock

    def release_lock_once_another_client_came(conn: Connection, name: str) -> None:
        if not others:
            others.append(OtherClient(bouncer, str(engine.url.database)).__enter__())
        let_go(conn, name)

    monkeypatch.setattr(maintenance, "release_lock", release_lock_once_another_client_came)
    try:
        store = open_event_store(engine)
        handler = CommandHandler(store)
        for _ in range(3):
            new_order(handler)
        reader = open_global_log(engine)
        rebuild(engine, reader, order_history(store), list(PROJECTIONS.values()))
    finally:
        for other in others:
            other.__exit__()
        engine.dispose()

    assert others, "the rebuild let go of no lock"
    with pg.connect() as conn:
        held = conn.execute(
            text(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            )
        ).scalar_one()
    assert held == 0
