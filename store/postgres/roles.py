"""PostgreSQL roles, for least privilege: make them, hand tables to their owner, and grant
each role what it is given, no more (``orders migrate --create-roles``).

What each role is given is decided by the composition root (``bootstrap/roles.py``),
from the table declarations; this module only says it in SQL. Every statement is built
with psycopg2's ``sql`` module, which quotes identifiers and literals, and runs through
``driver_cursor``, whose errors never carry the statement. A password reaches the server
only as a SCRAM verifier computed here (as psql's ``\\password`` does): never in clear
text, so neither a server log nor an error can show it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from psycopg2 import sql
from psycopg2.extensions import encrypt_password
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.pool import NullPool

from store.postgres.driver import driver_cursor

TABLE_PRIVILEGES = frozenset({"SELECT", "INSERT", "UPDATE", "DELETE"})
OTHER_PRIVILEGES = frozenset({"CONNECT", "TEMPORARY", "USAGE", "CREATE"})


class RolesError(Exception):
    """What keeps the roles from being set up; the message says what to do."""


@dataclass(frozen=True)
class Grant:
    """``privilege`` on a table, or on some of its ``columns`` only."""

    privilege: str
    columns: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.privilege not in TABLE_PRIVILEGES:
            raise ValueError(f"not a table privilege this module grants: {self.privilege!r}")

    def __str__(self) -> str:
        return f"{self.privilege} ({', '.join(self.columns)})" if self.columns else self.privilege

    def composed(self) -> sql.Composable:
        if not self.columns:
            return sql.SQL(self.privilege)
        columns = sql.SQL(", ").join(map(sql.Identifier, self.columns))
        return sql.SQL("{} ({})").format(sql.SQL(self.privilege), columns)


@dataclass(frozen=True)
class Administrator:
    """The role a connection logged in as, and whether it may manage roles."""

    name: str
    superuser: bool
    createrole: bool


def administrator(conn: Connection) -> Administrator:
    row = conn.execute(
        text("SELECT rolname, rolsuper, rolcreaterole FROM pg_roles WHERE rolname = session_user")
    ).one()
    return Administrator(row.rolname, row.rolsuper, row.rolcreaterole)


def ensure_role(conn: Connection, role: str, password: str | None) -> bool:
    """Create the LOGIN role ``role`` if it is missing (True when it was); set its
    password when one is given. A role that exists keeps its password otherwise."""
    exists = conn.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :role"), {"role": role})
    created = exists.first() is None
    if created:
        _run(conn, sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    if password is not None:
        set_password(conn, role, password)
    return created


def set_password(conn: Connection, role: str, password: str) -> None:
    dbapi_connection = conn.connection.dbapi_connection
    # With the connection as scope, libpq asks the server which scheme it uses
    # (password_encryption) and hashes the password here, salted.
    verifier = encrypt_password(password, role, dbapi_connection)
    statement = sql.SQL("ALTER ROLE {} PASSWORD {}")
    _run(conn, statement.format(sql.Identifier(role), sql.Literal(verifier)))


def allow_set_role(conn: Connection, role: str) -> None:
    """Make the session's role a member of ``role``, so that it may ``SET ROLE`` to it
    and hand it tables (a superuser needs neither)."""
    _run(conn, sql.SQL("GRANT {} TO SESSION_USER").format(sql.Identifier(role)))


def grant_on_database(conn: Connection, role: str, privileges: Sequence[str]) -> None:
    """``privileges`` on the connection's database."""
    name = conn.execute(text("SELECT current_database()")).scalar_one()
    statement = sql.SQL("GRANT {} ON DATABASE {} TO {}")
    _run(
        conn, statement.format(_privileges(privileges), sql.Identifier(name), sql.Identifier(role))
    )


def grant_on_schema(conn: Connection, role: str, privileges: Sequence[str]) -> None:
    """``privileges`` on the schema the tables are made in (the first of the search
    path: ``public``, unless told otherwise)."""
    statement = sql.SQL("GRANT {} ON SCHEMA {} TO {}")
    schema = sql.Identifier(_schema(conn))
    _run(conn, statement.format(_privileges(privileges), schema, sql.Identifier(role)))


def adopt(
    conn: Connection, owner: str, tables: Iterable[str], functions: Iterable[str] = ()
) -> list[str]:
    """Hand those of ``tables`` and ``functions`` (by name, in the schema) that exist and
    belong to another role to ``owner``; their names. A table's indexes, its serial
    sequences and its triggers go with it."""
    adopted = []
    found = conn.execute(
        text(
            "SELECT relname FROM pg_class WHERE relnamespace = current_schema()::regnamespace"
            " AND relkind IN ('r', 'p') AND relname = ANY(:tables)"
            " AND pg_get_userbyid(relowner) <> :owner ORDER BY relname"
        ),
        {"tables": list(tables), "owner": owner},
    )
    for (table,) in found.all():
        statement = sql.SQL("ALTER TABLE {} OWNER TO {}")
        _run(conn, statement.format(sql.Identifier(table), sql.Identifier(owner)))
        adopted.append(table)
    found = conn.execute(
        text(
            "SELECT oid::regprocedure::text AS signature, proname FROM pg_proc"
            " WHERE pronamespace = current_schema()::regnamespace AND proname = ANY(:functions)"
            " AND pg_get_userbyid(proowner) <> :owner ORDER BY proname"
        ),
        {"functions": list(functions), "owner": owner},
    )
    for signature, name in found.all():
        # ``regprocedure`` prints the name quoted as needed and the argument types.
        statement = sql.SQL("ALTER FUNCTION {} OWNER TO {}")
        _run(conn, statement.format(sql.SQL(signature), sql.Identifier(owner)))
        adopted.append(f"{name}()")
    return adopted


def grant_on_tables(
    conn: Connection, grants: Mapping[str, Mapping[str, Sequence[Grant]]], roles: Sequence[str]
) -> None:
    """Make each table's privileges for ``roles`` exactly ``grants[table][role]``: what
    they had is revoked first, in the same transaction, so a privilege taken out of the
    policy goes away too. Run it as the tables' owner: grants are recorded as the
    owner's, whoever issues them, and the owner revokes only its own."""
    for table, given in grants.items():
        name = sql.Identifier(table)
        everyone = sql.SQL(", ").join(map(sql.Identifier, roles))
        _run(conn, sql.SQL("REVOKE ALL ON TABLE {} FROM {}").format(name, everyone))
        for role, privileges in given.items():
            if not privileges:
                continue
            listed = sql.SQL(", ").join(grant.composed() for grant in privileges)
            statement = sql.SQL("GRANT {} ON TABLE {} TO {}")
            _run(conn, statement.format(listed, name, sql.Identifier(role)))


def grant_on_sequences(
    conn: Connection, tables: Iterable[str], role: str, privileges: Sequence[str]
) -> list[str]:
    """Exactly ``privileges`` (``USAGE``: nextval; ``SELECT``: currval) on the sequences
    that ``tables``' columns draw from (``bigserial``, identity); their names."""
    found = conn.execute(
        text(
            "SELECT DISTINCT s.relname FROM pg_depend d"
            " JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'"
            " JOIN pg_class t ON t.oid = d.refobjid"
            " WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass"
            " AND d.deptype IN ('a', 'i')"
            " AND t.relnamespace = current_schema()::regnamespace AND t.relname = ANY(:tables)"
            " ORDER BY s.relname"
        ),
        {"tables": list(tables)},
    )
    sequences = [name for (name,) in found.all()]
    for sequence in sequences:
        name, grantee = sql.Identifier(sequence), sql.Identifier(role)
        _run(conn, sql.SQL("REVOKE ALL ON SEQUENCE {} FROM {}").format(name, grantee))
        statement = sql.SQL("GRANT {} ON SEQUENCE {} TO {}")
        _run(conn, statement.format(_privileges(privileges), name, grantee))
    return sequences


def engine_as(engine: Engine, role: str) -> Engine:
    """A new engine on ``engine``'s database whose every connection acts as ``role``
    (``SET ROLE``): what it creates, ``role`` owns. Unpooled; dispose of it after use."""
    acting = create_engine(engine.url, poolclass=NullPool)
    statement = sql.SQL("SET ROLE {}").format(sql.Identifier(role))

    @event.listens_for(acting, "connect")
    def _set_role(dbapi_connection: Any, _record: Any) -> None:
        with dbapi_connection.cursor() as cursor:
            cursor.execute(statement)
        dbapi_connection.commit()  # a SET in a transaction rolled back would be undone

    return acting


def _schema(conn: Connection) -> str:
    schema = conn.execute(text("SELECT current_schema()")).scalar_one()
    if schema is None:
        raise RolesError("no schema is on the search path to make the tables in")
    return str(schema)


def _privileges(privileges: Sequence[str]) -> sql.Composable:
    unknown = set(privileges) - OTHER_PRIVILEGES - TABLE_PRIVILEGES
    if unknown:
        raise ValueError(f"not a privilege this module grants: {sorted(unknown)}")
    return sql.SQL(", ").join(map(sql.SQL, privileges))


def _run(conn: Connection, statement: sql.Composable) -> None:
    with driver_cursor(conn) as cursor:
        cursor.execute(statement)
