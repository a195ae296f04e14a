"""What each role may do on each table, derived from the table declarations
(``bootstrap/roles.py``); the SQL that grants it runs in tests/e2e/test_roles.py."""

from __future__ import annotations

import pytest
from sqlalchemy import Column, Integer, MetaData, Table

from bootstrap import MIGRATIONS
from bootstrap.roles import READER, WRITER, RolesError, passwords_from, table_grants
from readmodels import tables as read_side
from store import schema as event_store
from store.postgres.roles import Grant


def privileges(role: str, table: str) -> set[str]:
    return {str(grant) for grant in table_grants()[table][role]}


def test_every_declared_table_and_alembics_own_have_grants() -> None:
    declared = {name for metadata in MIGRATIONS.metadata for name in metadata.tables}

    assert set(table_grants()) == declared | {"alembic_version"}


def test_events_are_read_and_appended_by_the_writer_and_only_read_by_the_reader() -> None:
    assert privileges(WRITER, "events") == {"SELECT", "INSERT"}
    assert privileges(READER, "events") == {"SELECT"}


def test_the_reader_only_ever_reads() -> None:
    grants = table_grants()

    assert {str(g) for table in grants.values() for g in table[READER]} == {"SELECT"}
    assert not grants["snapshots"][READER]
    assert not grants["dead_letters"][READER]
    for name in read_side.metadata.tables:
        assert grants[name][READER] == (Grant("SELECT"),)


def test_the_writer_keeps_the_read_side_and_prunes_the_command_log() -> None:
    for name in read_side.metadata.tables:
        assert privileges(WRITER, name) == {"SELECT", "INSERT", "UPDATE", "DELETE"}
    assert privileges(WRITER, "snapshots") == {"SELECT", "INSERT", "UPDATE"}
    assert privileges(WRITER, "command_log") == {
        "SELECT",
        "INSERT",
        "DELETE",
        "UPDATE (recorded_at)",
    }
    assert privileges(WRITER, "command_task_ids") == {"SELECT", "INSERT", "DELETE"}


def test_a_table_added_to_the_event_store_is_only_read_and_appended_by_default() -> None:
    added = Table("new_log", event_store.metadata, Column("id", Integer, primary_key=True))
    try:
        grants = table_grants()
    finally:
        event_store.metadata.remove(added)

    assert grants["new_log"] == {WRITER: (Grant("SELECT"), Grant("INSERT")), READER: ()}


def test_a_set_of_tables_nobody_said_anything_about_is_refused() -> None:
    with pytest.raises(RolesError, match="does not know"):
        table_grants([event_store.metadata, read_side.metadata, MetaData()])


def test_a_grant_names_only_table_privileges() -> None:
    with pytest.raises(ValueError, match="not a table privilege"):
        Grant("TRUNCATE")


def test_passwords_come_from_the_variables_that_are_set_and_not_empty() -> None:
    environ = {"ORDERS_WRITER_PASSWORD": "s3cret", "ORDERS_READER_PASSWORD": ""}

    assert passwords_from(environ) == {WRITER: "s3cret"}
