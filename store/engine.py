"""Engines for the store, and the one place that asks which database one is on.

Engines are built by the composition root, never at import.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Engine
from sqlalchemy.engine import make_url

from store.backend import Backend
from store.postgres.backend import BACKEND as POSTGRES
from store.sqlite.backend import BACKEND as SQLITE

_BACKENDS: dict[str, Backend] = {"postgresql": POSTGRES, "sqlite": SQLITE}


def build_engine(url: str, *, pool_size: int | None = None, **kwargs: Any) -> Engine:
    """``pool_size``: connections kept open for PostgreSQL (SQLAlchemy's default, 5,
    when None); SQLite ignores it, its connections are files."""
    name = make_url(url).get_backend_name()
    if name not in _BACKENDS:
        raise ValueError(f"the store runs on PostgreSQL or SQLite, not {name}")
    return _BACKENDS[name].build_engine(url, pool_size=pool_size, **kwargs)


def backend(bind: Engine | Connection) -> Backend:
    """The ``Backend`` of the database ``bind`` talks to."""
    return _BACKENDS[bind.dialect.name]
