"""Two statements that make the hot path three round trips on PostgreSQL, as few as the
plainest hand-written client needs: one read, one write, one commit.

They say in SQL what ``SqlEventStore`` says in several Core statements on SQLite, where
round trips cost nothing; the contract suite runs both against the same tests.
"""

from __future__ import annotations

from functools import cache

from sqlalchemy import TextClause, text

# The command's recorded outcome, the newest snapshot of the schema the caller knows, and
# the events after it (or after nothing, when there is no such snapshot), in one read.
LOAD_STREAM = text(
    """
    SELECT 0 AS part, 0 AS version, 0 AS schema_version, '' AS event_type,
           '' AS event_id, outcome AS data, NULL::jsonb AS metadata, recorded_at
      FROM command_log WHERE command_id = :command_id
    UNION ALL
    SELECT 1, version, schema_version, '', '', state, NULL, taken_at
      FROM snapshots
     WHERE aggregate_type = :aggregate_type AND aggregate_id = :aggregate_id
       AND schema_version = :snapshot_schema
    UNION ALL
    SELECT 2, version, schema_version, event_type, event_id::text, data, metadata, recorded_at
      FROM events
     WHERE aggregate_type = :aggregate_type AND aggregate_id = :aggregate_id
       AND version > COALESCE((SELECT version FROM snapshots
                                WHERE aggregate_type = :aggregate_type
                                  AND aggregate_id = :aggregate_id
                                  AND schema_version = :snapshot_schema), 0)
    ORDER BY part, version
    """
)

_EVENT_FIELDS = (
    "event_id",
    "version",
    "event_type",
    "schema_version",
    "data",
    "metadata",
    "recorded_at",
)


@cache
def append_statement(event_count: int, records_command: bool) -> TextClause:
    """Record the command, check the stream's version and insert the events, at once.

    The events go in only if the stream is at ``:expected_version`` and (when recording)
    the command id was new; the row returned says which held, and the caller raises and
    rolls back otherwise. A racing writer that commits the same version first still
    trips the unique constraint, exactly as with separate statements.
    """
    values = ", ".join(
        "(" + ", ".join(f":{field}_{index}" for field in _EVENT_FIELDS) + ")"
        for index in range(event_count)
    )
    command_cte = (
        """
        command AS (
            INSERT INTO command_log
                   (command_id, command_type, aggregate_id, status, outcome, recorded_at)
            VALUES (:command_id, :command_type, :aggregate_id, :status,
                    CAST(:outcome AS jsonb), :command_recorded_at)
            ON CONFLICT DO NOTHING
            RETURNING 1
        ),"""
        if records_command
        else ""
    )
    only_new_command = "AND EXISTS (SELECT 1 FROM command)" if records_command else ""
    recorded = "(SELECT count(*) FROM command)" if records_command else "1"
    return text(
        f"""
        WITH {command_cte}
        current AS (
            SELECT COALESCE(MAX(version), 0) AS version FROM events
             WHERE aggregate_type = :aggregate_type AND aggregate_id = :aggregate_id
        ),
        appended AS (
            INSERT INTO events (event_id, aggregate_type, aggregate_id, version, event_type,
                                schema_version, data, metadata, recorded_at)
            SELECT CAST(e.event_id AS uuid), :aggregate_type, :aggregate_id, e.version,
                   e.event_type, e.schema_version, CAST(e.data AS jsonb),
                   CAST(e.metadata AS jsonb), e.recorded_at
              FROM (VALUES {values})
                   AS e(event_id, version, event_type, schema_version, data, metadata,
                        recorded_at)
             WHERE (SELECT version FROM current) = :expected_version {only_new_command}
            RETURNING 1
        )
        SELECT {recorded} AS recorded,
               (SELECT version FROM current) AS actual,
               (SELECT count(*) FROM appended) AS appended
        """  # noqa: S608 - only placeholders and fixed fragments are interpolated
    )
