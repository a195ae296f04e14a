"""Messages that could not be read as commands at all, kept with their raw body."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine, select

from store.backend import WRITE
from store.codec import as_utc
from store.schema import dead_letters

MAX_BODY_CHARS = 64 * 1024
"""What is kept of a body: enough to see what a producer sent, not a copy of any size."""


@dataclass(frozen=True)
class DeadLetter:
    id: int
    source: str
    reason: str
    body: str
    recorded_at: datetime


class DeadLetterLog:
    def __init__(self, engine: Engine, on_record: Callable[[str], None] = lambda _: None) -> None:
        """``on_record`` is told the reason of each message recorded (metrics count them)."""
        self._writer = engine.execution_options(**WRITE)
        self._engine = engine
        self._on_record = on_record

    def record(self, source: str, reason: str, body: str) -> None:
        # A body past the limit is cut, not refused: losing the record would be worse.
        # PostgreSQL text cannot hold NUL, which a pickle or a broken body may carry.
        row = {
            "source": _printable(source)[:64],
            "reason": _printable(reason),
            "body": _printable(body[:MAX_BODY_CHARS])[:MAX_BODY_CHARS],
            "recorded_at": datetime.now(UTC),
        }
        with self._writer.begin() as conn:
            conn.execute(dead_letters.insert().values(row))
        self._on_record(reason)

    def recent(self, limit: int = 50) -> list[DeadLetter]:
        query = select(dead_letters).order_by(dead_letters.c.id.desc()).limit(limit)
        with self._engine.connect() as conn:
            rows = conn.execute(query).all()
        return [
            DeadLetter(row.id, row.source, row.reason, row.body, as_utc(row.recorded_at))
            for row in rows
        ]


def _printable(text: str) -> str:
    return text.replace("\x00", "\\x00")
