"""The ``orders`` command line, run as a user runs it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sqlalchemy import Engine, func, select

from store.schema import events
from tests.support.cli import orders
from tests.support.walkthrough import WALKTHROUGH_TAIL


def count_events(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return int(db.execute("SELECT count(*) FROM events").fetchone()[0])


def test_the_embedded_demo_prints_the_walkthrough_and_is_idempotent(tmp_path: Path) -> None:
    first = orders("demo", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert (
        "✓ Loaded: Order(id=order-001, customer=customer-123, items=0, total=$0.00, "
        "status=created, version=1)" in first.stdout
    )
    assert first.stdout.endswith(WALKTHROUGH_TAIL)
    assert count_events(tmp_path / "orders.db") == 4

    second = orders("demo", cwd=tmp_path)

    assert second.returncode == 0, second.stderr
    assert second.stdout == first.stdout
    assert count_events(tmp_path / "orders.db") == 4


def test_history_and_status_read_what_the_demo_wrote(tmp_path: Path) -> None:
    assert orders("demo", cwd=tmp_path).returncode == 0

    history = orders("history", "order-001", "--full", cwd=tmp_path)
    missing = orders("history", "order-404", cwd=tmp_path)

    assert history.returncode == 0
    assert "{'item_id': 'apple', 'quantity': 3, 'price': '1.50'}" in history.stdout
    assert missing.returncode == 1
    assert "order order-404 has no events" in missing.stderr


def test_reading_an_unmigrated_database_says_to_migrate(tmp_path: Path) -> None:
    result = orders("status", "00000000-0000-4000-8000-000000000000", cwd=tmp_path)

    assert result.returncode == 1
    assert "run `orders migrate` first" in result.stderr
    assert "Traceback" not in result.stderr


def test_status_of_an_unknown_or_malformed_command_id(tmp_path: Path) -> None:
    assert orders("migrate", cwd=tmp_path).returncode == 0
    unknown = orders("status", "00000000-0000-4000-8000-000000000000", cwd=tmp_path)
    malformed = orders("status", "not-a-uuid", cwd=tmp_path)

    assert unknown.returncode == 1
    assert "no outcome is recorded" in unknown.stderr
    assert malformed.returncode == 2
    assert "must be a UUID" in malformed.stderr


def test_a_bad_setting_stops_the_cli_naming_the_variable(tmp_path: Path) -> None:
    result = orders("demo", env={"ORDERS_SNAPSHOT_EVERY": "often"}, cwd=tmp_path)

    assert result.returncode == 2
    assert "ORDERS_SNAPSHOT_EVERY must be an integer" in result.stderr
    assert "Traceback" not in result.stderr


def test_send_refuses_a_bad_field_before_anything_is_sent(tmp_path: Path) -> None:
    zero = orders("send", "add-item", "order-1", "apple", "0", "1.50", cwd=tmp_path)
    cents = orders("send", "add-item", "order-1", "apple", "1", "1.505", cwd=tmp_path)

    assert zero.returncode == 2
    assert "quantity" in zero.stderr and "between 1 and 10000" in zero.stderr
    assert cents.returncode == 2
    assert "at most 2 decimal places" in cents.stderr


def test_migrate_on_postgres_is_safe_to_repeat(pg: Engine, postgres_url: str) -> None:
    env = {"ORDERS_DATABASE_URL": postgres_url}

    first, second = orders("migrate", env=env), orders("migrate", env=env)

    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    with pg.connect() as conn:
        assert conn.execute(select(func.count()).select_from(events)).scalar_one() == 0


def test_config_hides_passwords(tmp_path: Path) -> None:
    env = {"ORDERS_DATABASE_URL": "postgresql+psycopg2://orders:s3cret@db:5432/orders"}

    result = orders("config", env=env, cwd=tmp_path)

    assert result.returncode == 0
    assert "s3cret" not in result.stdout
    assert "orders:***@db:5432/orders" in result.stdout


def test_send_without_a_broker_refuses_instead_of_losing_the_command(tmp_path: Path) -> None:
    # Before: it printed a command id and exited 0, the command queued in the memory of
    # a process that then ended.
    result = orders("send", "create-order", "order-1", "customer-1", cwd=tmp_path)

    assert result.returncode == 2
    assert "ORDERS_BROKER_URL is not set" in result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.stderr


def test_send_resend_every_needs_wait(tmp_path: Path) -> None:
    env = {"ORDERS_BROKER_URL": "redis://127.0.0.1:1/0"}
    result = orders(
        "send", "create-order", "order-1", "c-1", "--resend-every", "1", env=env, cwd=tmp_path
    )

    assert result.returncode == 2
    assert "--resend-every needs --wait" in result.stderr
