"""Events are append-only: a trigger refuses UPDATE, DELETE and TRUNCATE on ``events``
to every role but the table's owner, superusers included (PostgreSQL only).

Privileges already keep the workers' role from rewriting events (``bootstrap/roles.py``);
the trigger also stops a superuser or any role granted too much, by mistake. The owner
(the role the migrations run as) may still repair an event on purpose.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

# SECURITY INVOKER (the default): current_user is the role running the statement.
FUNCTION = """
CREATE OR REPLACE FUNCTION events_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF current_user <> (SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = TG_RELID)
    THEN
        RAISE EXCEPTION 'events are append-only: % on % is refused to role %',
                        TG_OP, TG_TABLE_NAME, current_user
              USING ERRCODE = 'insufficient_privilege',
                    HINT = 'only the owner of the table may change or remove events';
    END IF;
    RETURN NULL;
END
$$
"""

TRIGGER = """
CREATE TRIGGER events_append_only
BEFORE UPDATE OR DELETE OR TRUNCATE ON events
FOR EACH STATEMENT EXECUTE FUNCTION events_append_only()
"""


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return  # SQLite has no roles: whoever can open the file can write it
    op.execute(FUNCTION)
    op.execute(TRIGGER)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER IF EXISTS events_append_only ON events")
    op.execute("DROP FUNCTION IF EXISTS events_append_only()")
