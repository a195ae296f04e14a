"""The global log on SQLite: one writer at a time, so position order is commit order."""

from __future__ import annotations

from collections.abc import Generator

from sqlalchemy import Connection, func, select

from domain.events import AGGREGATE_TYPE
from store.codec import EVENT_COLUMNS, as_utc, stored_from_row
from store.log import Backlog, Checkpoint, GlobalLog, RecordedEvent
from store.schema import events


class SqliteGlobalLog(GlobalLog):
    def read_in(self, conn: Connection, after: Checkpoint, limit: int) -> list[RecordedEvent]:
        query = (
            select(events.c.position, *(events.c[name] for name in EVENT_COLUMNS))
            .where(events.c.position > after.position)
            .order_by(events.c.position)
            .limit(limit)
        )
        return [
            RecordedEvent(Checkpoint(0, row["position"]), row["aggregate_id"], stored_from_row(row))
            for row in conn.execute(query).mappings()
        ]

    def batches_in(
        self, conn: Connection, after: Checkpoint, size: int
    ) -> Generator[list[RecordedEvent], None, None]:
        while batch := self.read_in(conn, after, size):
            yield batch
            after = batch[-1].checkpoint

    def holds_back(self, conn: Connection, after: Checkpoint) -> bool:
        return False  # a commit is visible to the next reader, whatever its position

    def backlog(self, conn: Connection, after: Checkpoint) -> Backlog:
        query = select(
            func.count().label("events"), func.min(events.c.recorded_at).label("oldest")
        ).where(events.c.position > after.position)
        row = conn.execute(query).one()
        return Backlog(int(row.events), as_utc(row.oldest) if row.oldest else None)

    def head(self, conn: Connection) -> Checkpoint:
        position = conn.execute(select(func.max(events.c.position))).scalar_one()
        return Checkpoint(0, position or 0)

    def checkpoint_of(self, conn: Connection, aggregate_id: str, version: int) -> Checkpoint | None:
        position = conn.execute(
            select(events.c.position).where(
                events.c.aggregate_type == AGGREGATE_TYPE,
                events.c.aggregate_id == aggregate_id,
                events.c.version == version,
            )
        ).scalar_one_or_none()
        return None if position is None else Checkpoint(0, position)
