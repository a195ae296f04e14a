"""PostgreSQL column types SQLAlchemy does not name."""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects.postgresql.base import ischema_names
from sqlalchemy.types import UserDefinedType


class Xid8(UserDefinedType[int]):
    """A 64-bit transaction id (``pg_current_xact_id()``). The global log reads it in its
    own SQL, as text: psycopg2 has no type for it."""

    cache_ok = True

    def get_col_spec(self, **_: Any) -> str:
        return "xid8"


# So that reflecting the events table (the schema test, Alembic) knows the column's type.
ischema_names.setdefault("xid8", Xid8)
