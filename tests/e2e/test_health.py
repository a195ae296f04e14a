"""``orders health`` and the API's ``/api/health`` and ``/api/ready``, each state made to
happen for real: healthy (exit 0), degraded (1: a dead letter in the last hour, a read
model behind its lag limit, a parked event), down (2: the database or the broker
unreachable, a database not at the newest migration)."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
from sqlalchemy import Engine

from commands import CreateOrder
from domain.handler import CommandHandler
from readmodels.checkpoints import read_state, save_state
from readmodels.projections import PROJECTIONS
from store import open_event_store
from store.dead_letters import DeadLetterLog
from tests.support.api_server import ApiServer
from tests.support.cli import orders

UNREACHABLE_DATABASE = "postgresql+psycopg2://postgres@127.0.0.1:1/nowhere"
UNREACHABLE_BROKER = "redis://127.0.0.1:1/0"


def health(env: dict[str, str]) -> tuple[int, dict[str, Any], str]:
    """Exit code, the ``--json`` report, and the text report."""
    as_json = orders("health", "--json", env=env)
    as_text = orders("health", env=env)
    assert as_json.returncode == as_text.returncode, (as_json.stderr, as_text.stderr)
    assert "Traceback" not in as_json.stderr + as_text.stderr, as_json.stderr + as_text.stderr
    return as_json.returncode, json.loads(as_json.stdout), as_text.stdout


def states(report: dict[str, Any]) -> dict[str, str]:
    return {check["name"]: check["state"] for check in report["checks"]}


def test_healthy_is_0_with_one_line_per_check(worker_env: dict[str, str]) -> None:
    code, report, text = health(worker_env)

    assert code == 0, text
    assert report["status"] == "ok"
    expected = {"database", "broker", "dead letters", *(f"projection {p}" for p in PROJECTIONS)}
    assert states(report) == dict.fromkeys(expected, "ok")
    lines = text.strip().splitlines()
    assert len(lines) == len(expected) + 1 and lines[-1] == "ok", text
    assert all(line.split()[0] == "ok" for line in lines)


def test_a_dead_letter_in_the_last_hour_is_degraded_1(
    worker_env: dict[str, str], pg: Engine
) -> None:
    DeadLetterLog(pg).record("orders.commands", "not a message: the item is not JSON", "x")

    code, report, text = health(worker_env)

    assert code == 1, text
    assert report["status"] == "degraded"
    assert states(report)["dead letters"] == "degraded"
    assert "1 in the last hour" in text


def test_a_read_model_behind_its_lag_limit_or_stuck_is_degraded_1(
    worker_env: dict[str, str], pg: Engine
) -> None:
    # Events nobody projects (no worker runs), older than the limit allows.
    CommandHandler(open_event_store(pg)).handle(CreateOrder("order-lag", "customer-lag"))
    time.sleep(1.2)
    code, report, text = health({**worker_env, "ORDERS_MAX_LAG_SECONDS": "1"})
    assert code == 1, text
    assert set(states(report).values()) == {"ok", "degraded"}
    assert all(states(report)[f"projection {p}"] == "degraded" for p in PROJECTIONS)
    assert "1 events behind" in text

    # Within the limit it is healthy; a stuck projection is degraded whatever its lag.
    assert health({**worker_env, "ORDERS_MAX_LAG_SECONDS": "3600"})[0] == 0
    with pg.begin() as conn:
        name = next(iter(PROJECTIONS))
        state = read_state(conn, name)
        save_state(conn, name, state.checkpoint, stuck=True, error="a parked event")
    code, report, text = health({**worker_env, "ORDERS_MAX_LAG_SECONDS": "3600"})
    assert code == 1, text
    assert [n for n, s in states(report).items() if s != "ok"] == [f"projection {name}"]
    assert "stuck" in text


def test_an_unreachable_database_or_broker_is_down_2(worker_env: dict[str, str]) -> None:
    code, report, text = health({**worker_env, "ORDERS_DATABASE_URL": UNREACHABLE_DATABASE})
    assert code == 2, text
    assert report["status"] == "down"
    assert states(report)["database"] == "down"
    assert states(report)["broker"] == "ok"  # each check says what it found
    assert "cannot reach" in text and text.strip().splitlines()[-1] == "down"

    code, report, text = health({**worker_env, "ORDERS_BROKER_URL": UNREACHABLE_BROKER})
    assert code == 2, text
    assert states(report)["broker"] == "down" and states(report)["database"] == "ok"


def test_a_database_not_at_the_newest_migration_is_down_2(
    worker_env: dict[str, str], private_postgres: tuple[Any, str, Engine]
) -> None:
    server, _, _ = private_postgres
    empty = server.create_database("never_migrated")

    code, report, text = health({**worker_env, "ORDERS_DATABASE_URL": empty})

    assert code == 2, text
    assert states(report)["database"] == "down"
    assert "migrat" in text  # what to do about it: run the migrations


def test_the_api_says_alive_and_ready_and_503_when_a_dependency_is_down(
    worker_env: dict[str, str],
) -> None:
    ready = ApiServer(worker_env).wait_ready()
    broker_down = ApiServer({**worker_env, "ORDERS_BROKER_URL": UNREACHABLE_BROKER}).wait_ready()
    database_down = ApiServer(
        {**worker_env, "ORDERS_DATABASE_URL": UNREACHABLE_DATABASE}
    ).wait_ready()
    try:
        answers = {
            (name, path): httpx.get(f"{server.url}{path}", timeout=30)
            for name, server in (("ok", ready), ("broker", broker_down), ("db", database_down))
            for path in ("/api/health", "/api/ready")
        }
    finally:
        for server in (ready, broker_down, database_down):
            server.stop()

    for name in ("ok", "broker", "db"):  # alive whatever its dependencies do
        assert answers[(name, "/api/health")].status_code == 200
        assert answers[(name, "/api/health")].json() == {"status": "alive"}
    assert answers[("ok", "/api/ready")].status_code == 200
    assert answers[("ok", "/api/ready")].json()["status"] == "ok"
    for name, check in (("broker", "broker"), ("db", "database")):
        answer = answers[(name, "/api/ready")]
        assert answer.status_code == 503, answer.text
        assert states(answer.json())[check] == "down"
