"""The command path on PostgreSQL in two round trips: one statement reads all a decision
needs, one statement writes all it decided.

The write is a single statement, so it is one transaction on its own: it runs without
BEGIN and COMMIT round trips, and records the command only if it also appends the
events, and appends them only if the stream is at the expected version and the command
is new. Both statements are prepared once per connection, so PostgreSQL plans them once;
behind a pooler in transaction mode, where a prepared statement stays on a server
connection the next transaction may not get, they are sent whole each time instead
(``prepares`` in ``store/postgres/driver.py``).

They say in SQL what the SQLite store says in several Core statements, where round
trips cost nothing; the contract suite runs both against the same tests.
"""

from __future__ import annotations

import re
from datetime import datetime
from functools import cache
from typing import Any, NamedTuple

from sqlalchemy.exc import DBAPIError

from store.postgres.driver import DriverConnections

# The command's recorded outcome, the newest snapshot of the schema the caller knows, and
# the events after it (or after nothing, when there is no such snapshot), in one read.
# Three kinds of row in one result, told apart by ``part`` and ordered by it; each kind
# fills the columns it needs (``StreamRow`` names them). The metadata comes as three
# text columns: parsing a JSON object per event costs more than reading the payload.
OUTCOME, SNAPSHOT, EVENT = 0, 1, 2

_LOAD_STREAM = """
    SELECT 0 AS part, 0 AS version, 0 AS schema_version, '' AS event_type,
           COALESCE(fingerprint, '') AS event_id, outcome AS data, NULL AS command_id,
           NULL AS correlation_id, NULL AS causation_id, recorded_at
      FROM command_log WHERE command_id = :command_id
    UNION ALL
    SELECT 1, version, schema_version, '', '', state, NULL, NULL, NULL, taken_at
      FROM snapshots
     WHERE aggregate_type = :aggregate_type AND aggregate_id = :aggregate_id
       AND schema_version = :snapshot_schema
    UNION ALL
    SELECT 2, version, schema_version, event_type, event_id::text, data,
           metadata->>'command_id', metadata->>'correlation_id', metadata->>'causation_id',
           recorded_at
      FROM events
     WHERE aggregate_type = :aggregate_type AND aggregate_id = :aggregate_id
       AND version > COALESCE((SELECT version FROM snapshots
                                WHERE aggregate_type = :aggregate_type
                                  AND aggregate_id = :aggregate_id
                                  AND schema_version = :snapshot_schema), 0)
    ORDER BY part, version
"""


class StreamRow(NamedTuple):
    """A row of ``LOAD_STREAM``. An ``OUTCOME`` row carries the recorded outcome in
    ``data`` and the command's fingerprint in ``event_id``; a ``SNAPSHOT`` row its
    version, schema and state; an ``EVENT`` row every column."""

    part: int
    version: int
    schema_version: int
    event_type: str
    event_id: str
    data: Any
    command_id: str | None
    correlation_id: str | None
    causation_id: str | None
    at: datetime


_EVENT_FIELDS = (
    ("event_id", "uuid"),
    ("version", "integer"),
    ("event_type", "varchar"),
    ("schema_version", "smallint"),
    ("data", "jsonb"),
    ("metadata", "jsonb"),
    ("recorded_at", "timestamptz"),
)


def _append(event_count: int, records_command: bool) -> str:
    # Casts, because a prepared statement infers no type from a VALUES list.
    values = ", ".join(
        "(" + ", ".join(f"CAST(:{field}_{index} AS {kind})" for field, kind in _EVENT_FIELDS) + ")"
        for index in range(event_count)
    )
    # Each part runs only if the stream is at the expected version; the events go in
    # only if the command row did (a new command id). A racing writer that commits the
    # same version first still trips the unique constraint and fails the whole statement.
    command = (
        """
        command AS (
            INSERT INTO command_log
                   (command_id, command_type, aggregate_id, status, outcome, recorded_at,
                    fingerprint)
            SELECT CAST(:command_id AS varchar), CAST(:command_type AS varchar),
                   CAST(:aggregate_id AS varchar), CAST(:status AS varchar),
                   CAST(:outcome AS jsonb), CAST(:command_recorded_at AS timestamptz),
                   CAST(:fingerprint AS varchar)
             WHERE (SELECT version FROM current) = :expected_version
            ON CONFLICT DO NOTHING
            RETURNING 1
        ),"""
        if records_command
        else ""
    )
    only_new_command = "AND EXISTS (SELECT 1 FROM command)" if records_command else ""
    recorded = "(SELECT count(*) FROM command)" if records_command else "1"
    # Seen before this statement: a redelivered command, whatever the stream's version.
    known = (
        "EXISTS (SELECT 1 FROM command_log WHERE command_id = :command_id)"
        if records_command
        else "false"
    )
    return f"""
        WITH current AS (
            SELECT COALESCE(MAX(version), 0) AS version FROM events
             WHERE aggregate_type = :aggregate_type AND aggregate_id = :aggregate_id
        ),{command}
        appended AS (
            INSERT INTO events (event_id, aggregate_type, aggregate_id, version, event_type,
                                schema_version, data, metadata, recorded_at)
            SELECT e.event_id, CAST(:aggregate_type AS varchar), CAST(:aggregate_id AS varchar),
                   e.version, e.event_type, e.schema_version, e.data, e.metadata, e.recorded_at
              FROM (VALUES {values})
                   AS e(event_id, version, event_type, schema_version, data, metadata,
                        recorded_at)
             WHERE (SELECT version FROM current) = :expected_version {only_new_command}
            RETURNING 1
        )
        SELECT {recorded} AS recorded,
               {known} AS known,
               (SELECT version FROM current) AS actual,
               (SELECT count(*) FROM appended) AS appended
    """  # noqa: S608 - only placeholders and fixed fragments are interpolated


_NAMED = re.compile(r"(?<!:):([a-z_0-9]+)")


class PreparedStatement:
    """A statement PostgreSQL plans once per connection and then only executes.

    It runs on a driver connection in autocommit mode (``DriverConnections``), around
    SQLAlchemy's Connection: on the path every command takes, its per-call bookkeeping
    (events, isolation level set and reset, result metadata) cost as much as the
    database did. Driver errors come out as SQLAlchemy's, and a broken connection is
    invalidated.
    """

    def __init__(self, name: str, sql: str) -> None:
        self.name = name
        self._names = list(dict.fromkeys(_NAMED.findall(sql)))
        position = {name: f"${index}" for index, name in enumerate(self._names, start=1)}
        self._prepare = f"PREPARE {name} AS " + _NAMED.sub(lambda m: position[m.group(1)], sql)
        self._execute = f"EXECUTE {name} ({', '.join(['%s'] * len(self._names))})"
        # The same statement with the values in its text, for where PREPARE cannot be used.
        self._each_use = _NAMED.findall(sql)
        self._plain = _NAMED.sub("%s", sql)

    def sql_for(
        self, info: dict[str, Any], values: dict[str, Any], *, prepare: bool = True
    ) -> tuple[str, tuple[Any, ...]]:
        """What to send on the driver connection whose ``info`` this is, and its values:
        ``PREPARE`` and ``EXECUTE`` in one text the first time on that connection, then
        ``EXECUTE`` alone; the whole statement where ``prepare`` is False (behind a pooler
        in transaction mode). PREPARE is not transactional: whatever becomes of the
        transaction it is sent in, the statement stays prepared on the session."""
        if not prepare:
            return self._plain, tuple(values[name] for name in self._each_use)
        ordered = tuple(values[name] for name in self._names)
        prepared: set[str] = info.setdefault("orders_prepared", set())
        if self.name in prepared:
            return self._execute, ordered
        prepared.add(self.name)
        return f"{self._prepare.replace('%', '%%')}; {self._execute}", ordered

    def run(self, connections: DriverConnections, values: dict[str, Any]) -> list[tuple[Any, ...]]:
        with connections.connection() as pooled:
            driver: Any = pooled.driver_connection
            dialect = connections.dialect
            dbapi_error = dialect.loaded_dbapi.Error
            sql, ordered = self.sql_for(pooled.info, values, prepare=connections.prepares)
            try:
                with driver.cursor() as cursor:
                    cursor.execute(sql, ordered)
                    rows: list[tuple[Any, ...]] = cursor.fetchall()
                return rows
            except dbapi_error as error:
                dropped = dialect.is_disconnect(error, driver, None)
                if dropped:
                    pooled.invalidate(error)
                raise DBAPIError.instance(
                    sql, None, error, dbapi_error, connection_invalidated=dropped
                ) from error


LOAD_STREAM = PreparedStatement("orders_load_stream", _LOAD_STREAM)


@cache
def append_statement(event_count: int, records_command: bool) -> PreparedStatement:
    kind = "command" if records_command else "bare"
    return PreparedStatement(
        f"orders_append_{event_count}_{kind}", _append(event_count, records_command)
    )


# A whole batch's writes in one statement (``PostgresBatch``), one array per column.
# It writes only if every stream is still at the version the batch decided on (checked
# as the single append checks it); a racing writer or a command already recorded trips
# a unique constraint and fails the whole statement, which the batch then undoes and
# writes again command by command. WITH ORDINALITY and ORDER BY insert the rows in the
# order given, so positions follow the batch's order as the single appends' did. The
# driver sends a list of strings as text[], which is cast to uuid[] and jsonb[] here.
_GROUP_APPEND = """
    WITH stale AS (
        SELECT count(*) AS streams
          FROM unnest(CAST(:stream_ids AS varchar[]), CAST(:stream_versions AS integer[]))
               AS s(aggregate_id, expected)
         WHERE s.expected <> COALESCE((SELECT MAX(e.version) FROM events e
                                        WHERE e.aggregate_type = :aggregate_type
                                          AND e.aggregate_id = s.aggregate_id), 0)
    ),
    command AS (
        INSERT INTO command_log
               (command_id, command_type, aggregate_id, status, outcome, recorded_at,
                fingerprint)
        SELECT c.command_id, c.command_type, c.aggregate_id, c.status, c.outcome,
               c.recorded_at, c.fingerprint
          FROM unnest(CAST(:command_ids AS varchar[]), CAST(:command_types AS varchar[]),
                      CAST(:command_aggregates AS varchar[]), CAST(:statuses AS varchar[]),
                      CAST(CAST(:outcomes AS text[]) AS jsonb[]),
                      CAST(:command_recorded_at AS timestamptz[]),
                      CAST(:fingerprints AS varchar[])) WITH ORDINALITY
               AS c(command_id, command_type, aggregate_id, status, outcome, recorded_at,
                    fingerprint, n)
         WHERE (SELECT streams FROM stale) = 0
         ORDER BY c.n
        RETURNING 1
    ),
    appended AS (
        INSERT INTO events (event_id, aggregate_type, aggregate_id, version, event_type,
                            schema_version, data, metadata, recorded_at)
        SELECT e.event_id, CAST(:aggregate_type AS varchar), e.aggregate_id, e.version,
               e.event_type, e.schema_version, e.data, e.metadata, e.recorded_at
          FROM unnest(CAST(CAST(:event_ids AS text[]) AS uuid[]),
                      CAST(:event_aggregates AS varchar[]), CAST(:versions AS integer[]),
                      CAST(:event_types AS varchar[]), CAST(:schema_versions AS smallint[]),
                      CAST(CAST(:data AS text[]) AS jsonb[]),
                      CAST(CAST(:metadata AS text[]) AS jsonb[]),
                      CAST(:recorded_at AS timestamptz[]))
               WITH ORDINALITY
               AS e(event_id, aggregate_id, version, event_type, schema_version, data,
                    metadata, recorded_at, n)
         WHERE (SELECT streams FROM stale) = 0
         ORDER BY e.n
        RETURNING 1
    )
    SELECT (SELECT streams FROM stale) AS stale,
           (SELECT count(*) FROM command) AS recorded,
           (SELECT count(*) FROM appended) AS appended
"""

GROUP_APPEND = PreparedStatement("orders_append_group", _GROUP_APPEND)
