"""Least privilege on PostgreSQL: ``orders migrate --create-roles``.

Run it as an administrator (ORDERS_DATABASE_URL names a superuser, or a role with
CREATEROLE that owns the database); it is idempotent, and is meant to be run for every
release in place of ``orders migrate``. It

1. creates the LOGIN roles below if they are missing; a password is set from
   ORDERS_OWNER_PASSWORD, ORDERS_WRITER_PASSWORD, ORDERS_READER_PASSWORD when the
   variable is set (sent as a SCRAM verifier, never in clear, never printed), and left
   as it is otherwise (none for a new role: trust auth);
2. lets the administrator act as ``orders_owner`` (``GRANT orders_owner TO`` it, unless a
   superuser) and grants the database and schema privileges below;
3. hands the system's tables (and ``alembic_version``, and the trigger function of
   ``events``) that belong to another role to ``orders_owner``, so that an existing
   deployment adopts the roles;
4. runs the migrations as ``orders_owner`` (``SET ROLE``): everything they make, it owns;
5. sets the table and sequence privileges below, from the table declarations
   (``MIGRATIONS.metadata``): revoked and granted again, in one transaction, each time.

======================  ===========================================================
role                    privileges
======================  ===========================================================
``orders_owner``        owns every table, sequence and the ``events_append_only``
(migrations)            trigger function; CONNECT on the database; USAGE, CREATE on
                        the schema (PostgreSQL 15 took CREATE on ``public`` from
                        PUBLIC). The only role that may UPDATE, DELETE or TRUNCATE
                        ``events`` (the trigger refuses everyone else, superusers too).
``orders_writer``       CONNECT, TEMPORARY on the database; USAGE on the schema;
(workers, ``orders      SELECT, INSERT on every event-store table (``events``,
projections rebuild``,  ``command_log``, ``command_task_ids``, ``snapshots``,
``orders prune``)       ``dead_letters``); UPDATE on ``snapshots`` (a newer snapshot
                        replaces the older); DELETE on ``command_log``,
                        ``command_task_ids``, ``dead_letters`` and UPDATE of their
                        ``recorded_at`` column on ``command_log`` and ``dead_letters``
                        (retention: ``orders prune`` and beat's daily prune pick rows
                        with ``SELECT ... FOR UPDATE SKIP LOCKED``, which needs UPDATE
                        on a column); SELECT, INSERT, UPDATE, DELETE on every read-side
                        table (the read models, ``projection_checkpoints``,
                        ``parked_events``); SELECT on ``alembic_version``; USAGE,
                        SELECT on the sequences of ``events`` and ``dead_letters``.
``orders_reader``       CONNECT on the database; USAGE on the schema; SELECT on every
(API, dashboards)       read-side table, and on ``events``, ``command_log``,
                        ``command_task_ids`` (an order's history, read-your-writes
                        and a command's outcome read them) and ``alembic_version``
                        (readiness). Nothing on ``snapshots`` or ``dead_letters``.
======================  ===========================================================

A table added later gets, by default, SELECT and INSERT for the writer and nothing for
the reader if it is the event store's, everything but TRUNCATE for the writer and
SELECT for the reader if it is the read side's; anything else is said below
(``WRITER_ALSO``, ``READER_READS``). Advisory locks, ``pg_current_snapshot()`` and the
other functions the workers call need no privilege. ``projections rebuild`` builds its
new tables as TEMPORARY tables, which need the TEMPORARY privilege on the database:
PUBLIC has it by default, and the writer is granted it anyway.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence

from sqlalchemy import Connection, Engine, MetaData

from bootstrap.schema import MIGRATIONS
from readmodels import tables as read_side
from store import schema as event_store
from store.engine import backend
from store.postgres.roles import (
    Grant,
    RolesError,
    administrator,
    adopt,
    allow_set_role,
    engine_as,
    ensure_role,
    grant_on_database,
    grant_on_schema,
    grant_on_sequences,
    grant_on_tables,
)

__all__ = ["RolesError", "migrate_with_roles", "passwords_from", "table_grants"]

OWNER, WRITER, READER = "orders_owner", "orders_writer", "orders_reader"
ROLES = (OWNER, WRITER, READER)
PASSWORD_VARIABLES = {
    OWNER: "ORDERS_OWNER_PASSWORD",
    WRITER: "ORDERS_WRITER_PASSWORD",
    READER: "ORDERS_READER_PASSWORD",
}

ALEMBIC_VERSION = "alembic_version"
"""Alembic's own table: every role reads it to know the schema is current."""
FUNCTIONS = ("events_append_only",)
"""The trigger function of ``events`` (migration 0009), which the owner owns too."""

SELECT, INSERT, UPDATE, DELETE = (Grant(p) for p in ("SELECT", "INSERT", "UPDATE", "DELETE"))
PRUNE_PICKS = Grant("UPDATE", ("recorded_at",))
"""``SELECT ... FOR UPDATE`` needs UPDATE on one column: the one pruning goes by."""

WRITER_ALSO: dict[str, tuple[Grant, ...]] = {
    "snapshots": (UPDATE,),  # save_snapshot: an upsert moving the snapshot forward
    "command_log": (DELETE, PRUNE_PICKS),  # store/retention.py
    "command_task_ids": (DELETE,),  # store/retention.py, with their commands
    "dead_letters": (DELETE, PRUNE_PICKS),  # store/retention.py
}
"""What the workers do to the event store's tables beyond reading and appending."""
READER_READS = ("events", "command_log", "command_task_ids")
"""The event store's tables the API reads: an order's events and commands
(``?history=true``), a command's outcome by its id or task id (``after_command``,
``GET /api/commands/{id}``), and how far the read models lag behind the log."""

ROLES_LOCK = int.from_bytes(b"ROLES", "big")
"""Advisory lock: two ``migrate --create-roles`` at once take turns."""

Grants = dict[str, dict[str, tuple[Grant, ...]]]


def table_grants(metadata: Sequence[MetaData] = MIGRATIONS.metadata) -> Grants:
    """What the writer and the reader may do on each table, by table name."""
    known = {id(event_store.metadata), id(read_side.metadata)}
    if {id(each) for each in metadata} - known:
        raise RolesError(
            "a set of tables that bootstrap/roles.py does not know: say what each role "
            "may do with them"
        )
    stores = {t.name for m in metadata if m is event_store.metadata for t in m.tables.values()}
    missing = (WRITER_ALSO.keys() | set(READER_READS)) - stores
    if missing:
        raise RolesError(f"bootstrap/roles.py names tables that are not declared: {missing}")
    grants: Grants = {ALEMBIC_VERSION: {WRITER: (SELECT,), READER: (SELECT,)}}
    for each in metadata:
        for name in each.tables:
            if each is event_store.metadata:
                grants[name] = {
                    WRITER: (SELECT, INSERT, *WRITER_ALSO.get(name, ())),
                    READER: (SELECT,) if name in READER_READS else (),
                }
            else:
                grants[name] = {WRITER: (SELECT, INSERT, UPDATE, DELETE), READER: (SELECT,)}
    return grants


def passwords_from(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The roles' passwords the environment sets (an empty variable sets none)."""
    return {
        role: environ[variable]
        for role, variable in PASSWORD_VARIABLES.items()
        if environ.get(variable)
    }


def migrate_with_roles(engine: Engine, passwords: Mapping[str, str]) -> list[str]:
    """``orders migrate --create-roles`` on ``engine``, an administrator's connection:
    see the module's documentation. What it did, a line each (no password)."""
    if backend(engine).name != "postgresql":
        raise RolesError(
            "--create-roles needs PostgreSQL: this database is SQLite, which has no roles "
            "(whoever can open the file can write it)"
        )
    done: list[str] = []
    grants = table_grants()
    with engine.connect() as lock:
        backend(lock).hold_lock(lock, ROLES_LOCK)
        lock.commit()
        try:
            with engine.begin() as conn:
                done += _roles_and_ownership(conn, passwords, grants)
            owner = engine_as(engine, OWNER)
            try:
                MIGRATIONS.upgrade(owner)
                with owner.begin() as conn:
                    grant_on_tables(conn, grants, (WRITER, READER))
                    sequences = grant_on_sequences(conn, grants, WRITER, ("USAGE", "SELECT"))
            finally:
                owner.dispose()
        finally:
            backend(lock).release_lock(lock, ROLES_LOCK)
            lock.commit()
    done.append(f"migrated as {OWNER}")
    done += [f"{WRITER}: {line}" for line in _described(grants, WRITER)]
    done.append(f"{WRITER}: USAGE, SELECT on {', '.join(sequences)}")
    done += [f"{READER}: {line}" for line in _described(grants, READER)]
    return done


def _roles_and_ownership(
    conn: Connection, passwords: Mapping[str, str], grants: Grants
) -> list[str]:
    done = []
    admin = administrator(conn)
    if not (admin.superuser or admin.createrole):
        raise RolesError(
            f"--create-roles must run as a superuser or a role with CREATEROLE; "
            f"{admin.name} is neither"
        )
    for role in ROLES:
        created = ensure_role(conn, role, passwords.get(role))
        done.append(f"role {role}: {'created' if created else 'exists'}")
        if role in passwords:
            done.append(f"role {role}: password set from {PASSWORD_VARIABLES[role]}")
    if not admin.superuser:
        allow_set_role(conn, OWNER)
    grant_on_database(conn, OWNER, ("CONNECT",))
    grant_on_database(conn, WRITER, ("CONNECT", "TEMPORARY"))
    grant_on_database(conn, READER, ("CONNECT",))
    grant_on_schema(conn, OWNER, ("USAGE", "CREATE"))
    grant_on_schema(conn, WRITER, ("USAGE",))
    grant_on_schema(conn, READER, ("USAGE",))
    adopted = adopt(conn, OWNER, grants, FUNCTIONS)
    if adopted:
        done.append(f"handed to {OWNER}: {', '.join(adopted)}")
    return done


def _described(grants: Grants, role: str) -> Iterable[str]:
    """``SELECT, INSERT on events, command_log``: one line per set of privileges."""
    tables: dict[str, list[str]] = {}
    for table, given in grants.items():
        if given.get(role):
            tables.setdefault(", ".join(map(str, given[role])), []).append(table)
    for privileges, names in tables.items():
        yield f"{privileges} on {', '.join(names)}"
