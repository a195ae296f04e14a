"""Each table is declared once (``store/schema.py``, ``readmodels/tables.py``), and the
migrations make exactly what is declared, on PostgreSQL and on SQLite: Alembic's
autogenerate, held against a migrated database, finds nothing to add or drop."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Column, Engine, Integer, MetaData, Table

from bootstrap import MIGRATIONS
from store.schema import only_on


def declared() -> MetaData:
    combined = MetaData()
    for metadata in MIGRATIONS.metadata:
        for table in metadata.tables.values():
            table.to_metadata(combined)
    return combined


def differences(engine: Engine) -> list[object]:
    with engine.connect() as conn:

        def include(thing: object, *_: object) -> bool:
            only = only_on(thing)
            return only is None or only == conn.dialect.name

        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "include_object": include}
        )
        return list(compare_metadata(context, declared()))


def test_the_migrated_database_is_what_the_tables_declare(engine: Engine) -> None:
    assert differences(engine) == []


def test_the_comparison_sees_a_table_the_migrations_do_not_make(engine: Engine) -> None:
    # Proof that the test above can fail.
    extra = declared()
    Table("not_migrated", extra, Column("id", Integer, primary_key=True))
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        found = compare_metadata(context, extra)
    assert any(diff[0] == "add_table" and diff[1].name == "not_migrated" for diff in found)
