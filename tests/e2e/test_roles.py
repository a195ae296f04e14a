"""Least privilege: ``orders migrate --create-roles`` makes the owner, writer and reader
roles; a real worker runs as ``orders_writer``, the API as ``orders_reader``, and events
cannot be changed but by their owner, not even by a superuser.

Roles belong to the whole cluster, so these tests make them on a private PostgreSQL
server of their own (``tests.support.servers``), never on the shared one: two test runs
would meet in them there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from commands import AddItem, CancelOrder, Command, CreateOrder, PayOrder
from commands.client import CommandClient
from readmodels.maintenance import status
from readmodels.projections import PROJECTIONS
from readmodels.tables import order_summary
from store import build_engine, open_global_log
from tests.support.api_server import ApiServer
from tests.support.cli import orders
from tests.support.readmodels import snapshot_tables
from tests.support.servers import PostgresServer
from tests.support.waiting import eventually
from tests.support.workers import WorkerProcess

WRITER_PASSWORD = "w r@i/t:e#r%'s"  # quoted as a literal, never printed


@dataclass
class Deployment:
    server: PostgresServer
    admin_url: str
    runs: list[str]  # what each ``migrate --create-roles`` printed

    def url(self, role: str) -> str:
        return make_url(self.admin_url).set(username=role).render_as_string(hide_password=False)

    def engine(self, role: str = "postgres") -> Engine:
        return build_engine(self.url(role))


@pytest.fixture(scope="module")
def deployment() -> Iterator[Deployment]:
    """A private cluster whose database was migrated as the superuser (a deployment from
    before the roles), then given them twice."""
    server = PostgresServer().create()
    try:
        url = server.create_database("orders")
        first = orders("migrate", env={"ORDERS_DATABASE_URL": url})
        assert first.returncode == 0, first.stderr
        runs = []
        for _ in range(2):
            env = {"ORDERS_DATABASE_URL": url, "ORDERS_WRITER_PASSWORD": WRITER_PASSWORD}
            result = orders("migrate", "--create-roles", env=env)
            assert result.returncode == 0, result.stdout + result.stderr
            runs.append(result.stdout + result.stderr)
        yield Deployment(server, url, runs)
    finally:
        server.remove()


def fetch(engine: Engine, query: str) -> list[tuple[object, ...]]:
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(text(query))]


def refused(engine: Engine, statement: str) -> str:
    with pytest.raises(DBAPIError) as error, engine.begin() as conn:
        conn.execute(text(statement))
    return str(error.value.orig)


def test_create_roles_twice_hands_every_table_to_the_owner(deployment: Deployment) -> None:
    first, second = deployment.runs
    assert "role orders_writer: created" in first
    assert "role orders_writer: exists" in second
    assert "handed to orders_owner: " in first and "handed to orders_owner" not in second
    assert "events_append_only()" in first
    assert all(WRITER_PASSWORD not in run for run in deployment.runs)
    admin = deployment.engine()
    try:
        owners = fetch(
            admin, "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'"
        )
        assert owners == [("orders_owner",)]
        login = fetch(
            admin,
            "SELECT rolname, rolcanlogin, rolsuper, rolpassword IS NOT NULL FROM pg_authid"
            " WHERE rolname LIKE 'orders%' ORDER BY rolname",
        )
        assert login == [
            ("orders_owner", True, False, False),
            ("orders_reader", True, False, False),
            ("orders_writer", True, False, True),
        ]
        [(verifier,)] = fetch(
            admin, "SELECT rolpassword FROM pg_authid WHERE rolname = 'orders_writer'"
        )
        assert str(verifier).startswith("SCRAM-SHA-256$")  # hashed before it was sent
        asked = fetch(
            admin,
            "SELECT privilege, has_table_privilege(role, 'events', privilege) FROM"
            " (VALUES ('orders_writer', 'SELECT'), ('orders_writer', 'INSERT'),"
            " ('orders_writer', 'UPDATE'), ('orders_writer', 'DELETE'),"
            " ('orders_writer', 'TRUNCATE')) AS asked(role, privilege)",
        )
        privileges = {privilege: granted for privilege, granted in asked}
        assert privileges == {
            "SELECT": True,
            "INSERT": True,
            "UPDATE": False,
            "DELETE": False,
            "TRUNCATE": False,
        }
        # The reader may change nothing at all.
        writable = fetch(
            admin,
            "SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace"
            " AND relkind = 'r' AND ("
            " has_table_privilege('orders_reader', oid, 'INSERT, UPDATE, DELETE, TRUNCATE')"
            " OR has_any_column_privilege('orders_reader', oid, 'INSERT, UPDATE'))",
        )
        assert writable == []
    finally:
        admin.dispose()


def test_create_roles_as_a_non_superuser_with_createrole_that_owns_the_database() -> None:
    server = PostgresServer().create()
    try:
        server.create_database("scratch")  # then, as the superuser:
        superuser = build_engine(server.url, isolation_level="AUTOCOMMIT")
        with superuser.connect() as conn:
            conn.execute(text("CREATE ROLE administrator LOGIN CREATEROLE"))
            conn.execute(text("CREATE DATABASE orders OWNER administrator"))
        superuser.dispose()
        admin_url = make_url(server.url).set(username="administrator", database="orders")
        env = {"ORDERS_DATABASE_URL": admin_url.render_as_string(hide_password=False)}
        runs = [orders("migrate", "--create-roles", env=env) for _ in range(2)]
        as_writer = orders(
            "migrate",
            "--create-roles",
            env={"ORDERS_DATABASE_URL": admin_url.set(username="orders_writer").render_as_string()},
        )

        assert [run.returncode for run in runs] == [0, 0], runs[-1].stderr
        admin = build_engine(admin_url.set(username="postgres").render_as_string())
        try:
            owners = fetch(
                admin, "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'"
            )
            assert owners == [("orders_owner",)]
        finally:
            admin.dispose()
        assert as_writer.returncode == 1
        assert "must run as a superuser or a role with CREATEROLE" in as_writer.stderr
    finally:
        server.remove()


def test_create_roles_on_sqlite_is_refused_clearly(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'orders.db'}"

    result = orders("migrate", "--create-roles", env={"ORDERS_DATABASE_URL": url})

    assert result.returncode == 1
    assert "Error: --create-roles needs PostgreSQL" in result.stderr
    assert "Traceback" not in result.stderr


def sent(client: CommandClient, *commands: Command) -> str:
    """The commands' outcomes, each accepted; the last one's id."""
    for command in commands:
        outcome = client.send(command).wait(timeout=30)
        assert outcome.status == "accepted", outcome
    return commands[-1].command_id


def test_workers_write_as_the_writer_the_api_reads_as_the_reader_events_stay_put(
    deployment: Deployment,
    start_worker: Callable[..., WorkerProcess],
    client: CommandClient,
    worker_env: dict[str, str],
) -> None:
    writer_env = {**worker_env, "ORDERS_DATABASE_URL": deployment.url("orders_writer")}
    writer_env["ORDERS_SNAPSHOT_EVERY"] = "1"  # snapshots saved, and moved forward
    reader_env = {**worker_env, "ORDERS_DATABASE_URL": deployment.url("orders_reader")}
    start_worker(writer_env)
    last = sent(
        client,
        CreateOrder("r-1", "alice"),
        AddItem("r-1", "apple", 3, Decimal("1.50")),
        PayOrder("r-1", "card"),
        CreateOrder("r-2", "bob"),
        AddItem("r-2", "pear", 2, Decimal("2.00")),
        CancelOrder("r-2", "no longer needed"),
    )
    admin, writer, reader = (
        deployment.engine(role) for role in ("postgres", "orders_writer", "orders_reader")
    )
    try:
        # The API, as the reader: an order, its history, after the last command.
        api = ApiServer(reader_env).wait_ready()
        try:
            ready = httpx.get(f"{api.url}/api/ready", timeout=30)
            order = httpx.get(f"{api.url}/api/orders/r-1", timeout=30)
            history = httpx.get(
                f"{api.url}/api/orders/r-2?history=true&after_command={last}", timeout=30
            )
        finally:
            api.stop()
        assert ready.status_code == 200, ready.text  # it reads alembic_version
        assert order.status_code == 200, order.text
        assert (order.json()["status"], order.json()["total"]) == ("paid", "4.50")
        assert history.status_code == 200, history.text
        assert history.headers["X-Orders-Consistency"] == "fresh"
        assert [e["event_type"] for e in history.json()["events"]] == [
            "OrderCreated",
            "ItemAdded",
            "OrderCancelled",
        ]
        assert [c["command_type"] for c in history.json()["commands"]] == [
            "CreateOrder",
            "AddItem",
            "CancelOrder",
        ]

        # Every read model caught up: what a rebuild must give back.
        log = open_global_log(admin)
        report = eventually(
            lambda: status(admin, log, PROJECTIONS.values()),
            lambda entries: all(e.lag_events == 0 and not e.stuck for e in entries),
        )
        assert all(e.lag_events == 0 and not e.stuck for e in report), report
        before = snapshot_tables(admin)
        with writer.begin() as conn:  # the writer may damage a read model ...
            conn.execute(order_summary.delete().where(order_summary.c.order_id == "r-1"))
        assert snapshot_tables(admin) != before

        # ... and rebuild it, without CREATE on the schema: temporary tables.
        writer_cli = {"ORDERS_DATABASE_URL": deployment.url("orders_writer")}
        rebuilt = orders("projections", "rebuild", "--all", env=writer_cli)
        assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
        assert snapshot_tables(admin) == before
        verified = orders("projections", "verify", env=writer_cli)
        assert verified.returncode == 0, verified.stdout + verified.stderr
        # Retention runs in the workers too (beat's daily prune).
        pruned = orders(
            "prune", "--command-log-days", "1", "--dead-letters-days", "1", env=writer_cli
        )
        assert pruned.returncode == 0, pruned.stdout + pruned.stderr

        # Events are append-only: the writer lacks the privilege ...
        for statement in ("UPDATE events SET version = version", "DELETE FROM events"):
            assert "permission denied for table events" in refused(writer, statement)
        # ... a superuser that is not the owner is stopped by the trigger ...
        for statement in (
            "UPDATE events SET version = version",
            "DELETE FROM events",
            "TRUNCATE events",
        ):
            assert "events are append-only" in refused(admin, statement)
        # ... and the reader may add nothing.
        insert = (
            "INSERT INTO events (event_id, aggregate_type, aggregate_id, version, event_type,"
            " schema_version, data, metadata, recorded_at) VALUES (gen_random_uuid(), 'Order',"
            " 'r-9', 1, 'OrderCreated', 1, '{}', '{}', now())"
        )
        assert "permission denied for table events" in refused(reader, insert)
        assert "permission denied" in refused(reader, "DELETE FROM order_summary")
        assert fetch(admin, "SELECT count(*) FROM events") == [(6,)]
        # The owner alone may still repair an event, on purpose.
        owner = deployment.engine("orders_owner")
        try:
            with owner.connect() as conn:
                changed = conn.execute(text("UPDATE events SET version = version"))
                assert changed.rowcount == 6
                conn.rollback()
        finally:
            owner.dispose()
    finally:
        for engine in (admin, writer, reader):
            engine.dispose()
