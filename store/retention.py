"""Retention: prune old command-log rows (with their task ids) and old dead letters.

Events are never deleted: they are the system of record, and nothing here names them.

What pruning the command log gives up: the command log is what makes a command's second
delivery harmless (the worker answers it with the first one's recorded outcome and
writes nothing). A command whose row was pruned is a stranger again: if it is
redelivered or resent after that, it is decided again. One rejected the first time may
now be accepted and run; one accepted cannot append its events twice (their ids derive
from the command id and are unique) but is answered ``failed`` or ``rejected``, not
with its first outcome, and a producer believing that may send it anew. Keep the
command log longer than any producer resends a command, or any broker could redeliver
one: days, where a resend window is minutes. ``orders status`` no longer finds a pruned
command's outcome either.

Rows go in batches, each its own short transaction, so no lock is held for long and
workers writing meanwhile wait at most one batch. On PostgreSQL a batch skips rows
another transaction has locked (``FOR UPDATE SKIP LOCKED``; SQLite has no row locks and
the clause is left out), so pruning never queues behind a writer; what it skipped goes
next time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, Engine, Select, delete, func, select

from store.backend import WRITE
from store.schema import command_log, command_task_ids, dead_letters

DEFAULT_BATCH = 1_000
MAX_BATCH = 10_000
"""A batch's command ids go back as parameters of one statement (the task ids' DELETE):
far below SQLite's limit on those (32,766)."""

Progress = Callable[[int], None]


@dataclass(frozen=True)
class Pruned:
    """Rows pruned, or with ``dry_run`` rows that would be."""

    command_log: int = 0
    task_ids: int = 0
    dead_letters: int = 0
    dry_run: bool = False

    @property
    def progress_total(self) -> int:
        """What a ``progress`` callback is told of in all: command-log rows and dead
        letters (task ids go with their commands)."""
        return self.command_log + self.dead_letters


def days_ago(days: int, now: datetime | None = None) -> datetime:
    """The cutoff for keeping ``days`` days: rows recorded before it are pruned."""
    if days < 1:
        raise ValueError(f"retention must be at least 1 day, got {days}")
    return (now or datetime.now(UTC)).astimezone(UTC) - timedelta(days=days)


def prune(
    engine: Engine,
    *,
    command_log_before: datetime | None = None,
    dead_letters_before: datetime | None = None,
    batch_size: int = DEFAULT_BATCH,
    dry_run: bool = False,
    progress: Progress = lambda _: None,
) -> Pruned:
    """Delete command-log rows recorded before ``command_log_before`` (and the task ids
    of those commands) and dead letters recorded before ``dead_letters_before``; None
    leaves that table alone. ``batch_size`` rows per transaction, until a batch finds
    nothing. ``progress`` is told how many rows each batch deleted (an increment, as
    click's ``ProgressBar.update`` takes). ``dry_run`` deletes nothing and counts what
    would go."""
    if not 1 <= batch_size <= MAX_BATCH:
        raise ValueError(f"batch_size must be between 1 and {MAX_BATCH}, got {batch_size}")
    if dry_run:
        return count(
            engine, command_log_before=command_log_before, dead_letters_before=dead_letters_before
        )
    writer = engine.execution_options(**WRITE)
    pruned_commands = pruned_task_ids = pruned_letters = 0
    if command_log_before is not None:
        cutoff = _utc(command_log_before)
        while True:
            with writer.begin() as conn:
                commands, task_ids = _prune_commands(conn, cutoff, batch_size)
            if not commands:
                break
            pruned_commands += commands
            pruned_task_ids += task_ids
            progress(commands)
    if dead_letters_before is not None:
        cutoff = _utc(dead_letters_before)
        while True:
            with writer.begin() as conn:
                letters = _prune_dead_letters(conn, cutoff, batch_size)
            if not letters:
                break
            pruned_letters += letters
            progress(letters)
    return Pruned(pruned_commands, pruned_task_ids, pruned_letters)


def count(
    engine: Engine,
    *,
    command_log_before: datetime | None = None,
    dead_letters_before: datetime | None = None,
) -> Pruned:
    """What ``prune`` with the same cutoffs would delete now."""
    commands = task_ids = letters = 0
    with engine.connect() as conn:
        if command_log_before is not None:
            old = _old_commands(_utc(command_log_before))
            commands = _count(conn, select(func.count()).select_from(old.subquery()))
            of_old = command_task_ids.c.command_id.in_(old)
            task_ids = _count(conn, select(func.count()).where(of_old))
        if dead_letters_before is not None:
            older = dead_letters.c.recorded_at < _utc(dead_letters_before)
            letters = _count(conn, select(func.count()).where(older))
    return Pruned(commands, task_ids, letters, dry_run=True)


def _prune_commands(conn: Connection, cutoff: datetime, batch_size: int) -> tuple[int, int]:
    """One batch of the oldest commands: (command-log rows, task-id rows) deleted."""
    batch = (
        _old_commands(cutoff)
        .order_by(command_log.c.recorded_at)
        .limit(batch_size)
        .with_for_update(skip_locked=True)
    )
    gone = delete(command_log).where(command_log.c.command_id.in_(batch))
    ids = list(conn.execute(gone.returning(command_log.c.command_id)).scalars())
    if not ids:
        return 0, 0
    of_gone = delete(command_task_ids).where(command_task_ids.c.command_id.in_(ids))
    return len(ids), conn.execute(of_gone).rowcount


def _prune_dead_letters(conn: Connection, cutoff: datetime, batch_size: int) -> int:
    batch = (
        select(dead_letters.c.id)
        .where(dead_letters.c.recorded_at < cutoff)
        .order_by(dead_letters.c.recorded_at)
        .limit(batch_size)
        .with_for_update(skip_locked=True)
    )
    return conn.execute(delete(dead_letters).where(dead_letters.c.id.in_(batch))).rowcount


def _old_commands(cutoff: datetime) -> Select[str]:
    return select(command_log.c.command_id).where(command_log.c.recorded_at < cutoff)


def _count(conn: Connection, query: Select[int]) -> int:
    return int(conn.execute(query).scalar_one())


def _utc(moment: datetime) -> datetime:
    # SQLite compares the stored text: a cutoff must be written the way rows are, in UTC.
    # A naive cutoff is taken as UTC, like the naive datetimes SQLite hands back.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
