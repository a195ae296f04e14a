"""Exact money as a column type, on every database the store runs on."""

from __future__ import annotations

from sqlalchemy import Numeric

from store.sqlite.types import Cents

Money = Numeric(20, 2, asdecimal=True).with_variant(Cents(), "sqlite")
"""NUMERIC(20, 2) on PostgreSQL, integer cents on SQLite. Twenty digits: an order may
have any number of lines of up to 10,000 x 1,000,000, and a customer's lifetime value
sums many orders."""
