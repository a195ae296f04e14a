"""The pieces of the logs and the metrics that need no server: the JSON line, the
context a command's lines carry, the routine lines moved to DEBUG, the labels kept to a
short fixed list, and the counters a scrape reads."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from bootstrap import ConfigError, Settings
from bootstrap.logs import ContextFilter, bind, install, log_context
from bootstrap.metrics import (
    DEAD_LETTER_KINDS,
    EXPORTED,
    Metrics,
    NoMetrics,
    command_type_label,
    dead_letter_kind,
)
from commands.transport import HANDLE_COMMAND, SWEEP_PROJECTIONS


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger writing JSON lines into a buffer, through the project's filter."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    install([handler], "json")
    logger = logging.getLogger("tests.observability")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, buffer
    logger.removeHandler(handler)


def lines(buffer: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


def test_a_json_line_has_the_basics_and_the_contexts_fields(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, buffer = captured
    with log_context(task_id="t-1", retries=None):
        bind(command_id="c-1", order_id="o-1", command_type="PayOrder")
        logger.info("command %s accepted", "c-1")
        bind(status="accepted", duration_ms=1.5)
        logger.warning("after")
    logger.info("outside")

    first, second, outside = lines(buffer)
    assert first["message"] == "command c-1 accepted"
    assert first["level"] == "INFO" and first["logger"] == "tests.observability"
    assert str(first["time"]).endswith("+00:00")
    assert {k: first[k] for k in ("task_id", "command_id", "order_id", "command_type")} == {
        "task_id": "t-1",
        "command_id": "c-1",
        "order_id": "o-1",
        "command_type": "PayOrder",
    }
    assert "retries" not in first and "status" not in first  # unknown fields are left out
    assert (second["status"], second["duration_ms"]) == ("accepted", 1.5)
    assert "command_id" not in outside  # the context ends with its block


def test_an_exception_goes_in_one_field_and_extra_fields_win(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, buffer = captured
    try:
        raise ValueError("boom")
    except ValueError:
        with log_context(command_id="from-context"):
            logger.exception("failed", extra={"command_id": "from-the-line"})
    [line] = lines(buffer)
    assert line["level"] == "ERROR"
    assert "ValueError: boom" in str(line["exception"])
    assert line["command_id"] == "from-the-line"


def celery_record(name: str, task_id: str, level: int = logging.INFO) -> logging.LogRecord:
    """What Celery logs when a worker receives a task: its args name the task and id."""
    return logging.LogRecord(
        "celery.worker.strategy",
        level,
        __file__,
        1,
        "Task %(name)s[%(id)s] received",
        ({"name": name, "id": task_id},),
        None,
    )


def test_celerys_lines_about_a_command_carry_its_id_and_routine_tasks_become_debug() -> None:
    root = logging.getLogger()
    saved = root.level
    root.setLevel(logging.INFO)
    try:
        command = celery_record(HANDLE_COMMAND, "cmd-1")
        assert ContextFilter().filter(command)
        assert (command.command_id, command.task_id, command.levelname) == (  # type: ignore[attr-defined]
            "cmd-1",
            "cmd-1",
            "INFO",
        )
        # A sweep's "received" is DEBUG: dropped at INFO, kept (as DEBUG) at DEBUG.
        assert not ContextFilter().filter(celery_record(SWEEP_PROJECTIONS, "s-1"))
        root.setLevel(logging.DEBUG)
        sweep = celery_record(SWEEP_PROJECTIONS, "s-1")
        assert ContextFilter().filter(sweep)
        assert sweep.levelname == "DEBUG" and sweep.levelno == logging.DEBUG
    finally:
        root.setLevel(saved)


def test_a_foreign_task_id_is_mapped_to_the_command_id_on_celerys_lines() -> None:
    with log_context(task_id="their-task-id"):
        bind(command_id="the-command-id")
    record = celery_record(HANDLE_COMMAND, "their-task-id")
    ContextFilter().filter(record)
    assert record.command_id == "the-command-id"  # type: ignore[attr-defined]
    assert record.task_id == "their-task-id"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("reason", "kind"),
    [
        ("not a message: the item is not JSON: Expecting value", "not_a_message"),
        ("InvalidCommand: price must be a decimal string", "invalid_command"),
        ("unknown task (orders.nope)", "unknown_task"),
        ("something nobody foresaw: x", "other"),
        ("", "other"),
    ],
)
def test_a_dead_letters_label_is_its_kind_never_its_text(reason: str, kind: str) -> None:
    assert dead_letter_kind(reason) == kind
    assert kind in {*DEAD_LETTER_KINDS.values(), "other"}


def test_command_types_producers_invent_are_one_label() -> None:
    assert command_type_label("CreateOrder") == "CreateOrder"
    assert command_type_label("DropTable; --") == "unknown"


def test_metrics_count_into_their_registry_under_the_exported_names() -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry()
    metrics = Metrics(registry=registry)
    metrics.command("CreateOrder", "accepted", 0.01)
    metrics.command("CreateOrder", "accepted", 0.02)
    metrics.command("Invented", "rejected", None)
    metrics.dead_letter("not a message: the item is not JSON")
    metrics.projection_events("order_summary", 3)
    metrics.projection_events("order_summary", 0)
    metrics.conflict()
    metrics.end_to_end(-1.0)  # clocks apart: counted as 0, never negative

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert value("orders_commands_total", type="CreateOrder", status="accepted") == 2
    assert value("orders_commands_total", type="unknown", status="rejected") == 1
    assert value("orders_command_seconds_count") == 2
    assert value("orders_dead_letters_total", reason="not_a_message") == 1
    assert value("orders_projection_events_total", projection="order_summary") == 3
    assert value("orders_version_conflicts_total") == 1
    assert value("orders_command_end_to_end_seconds_sum") == 0
    assert value("orders_command_end_to_end_seconds_count") == 1
    names = {m.name for m in registry.collect()}
    # prometheus_client names a counter family without its _total.
    assert {n + ("_total" if n + "_total" in EXPORTED else "") for n in names} <= set(EXPORTED)
    assert b"orders_commands_total" in generate_latest(registry)


def test_no_metrics_observes_nothing_and_takes_the_same_calls() -> None:
    public = {name for name in vars(NoMetrics) if not name.startswith("_")}
    assert public <= set(vars(Metrics))  # every observation the code makes is exported
    NoMetrics().command("CreateOrder", "accepted", 0.1)


@pytest.mark.parametrize(
    ("variable", "raw", "message"),
    [
        ("ORDERS_LOG_FORMAT", "yaml", "ORDERS_LOG_FORMAT must be one of text, json"),
        ("ORDERS_METRICS_PORT", "0", "ORDERS_METRICS_PORT"),
        ("ORDERS_METRICS_PORT", "nine", "ORDERS_METRICS_PORT"),
        ("ORDERS_MAX_LAG_SECONDS", "-1", "ORDERS_MAX_LAG_SECONDS"),
        ("ORDERS_RETENTION_DAYS", "0", "ORDERS_RETENTION_DAYS"),
    ],
)
def test_operations_settings_are_validated(variable: str, raw: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env({variable: raw})


def test_operations_settings_have_quiet_defaults() -> None:
    settings = Settings.from_env({})
    assert settings.log_format == "text"
    assert settings.metrics_port is None and settings.retention_days is None
    assert settings.max_lag_seconds == 60.0
    assert Settings.from_env({"ORDERS_LOG_FORMAT": "json"}).log_format == "json"
