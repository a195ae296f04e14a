"""Configuration from ORDERS_* variables, always from an explicit mapping.

``Settings.from_env`` is given a plain dict here; ``os.environ`` is never changed (other
tests run in this process, and other people's workers on this machine).
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from celery import Celery

from bootstrap import ConfigError, Settings
from commands.transport import HANDLE_COMMAND, WAKE_PROJECTIONS
from store import build_engine
from workers import tasks
from workers.celery_config import celery_config

ROOT = Path(__file__).resolve().parents[2]

DEFAULTS = {
    "database_url": "sqlite:///orders.db",
    "broker_url": "memory://localhost/",
    "result_backend": None,
    "visibility_timeout": 3600,
    "task_time_limit": 300,
    "command_time_limit": 30,
    "conflict_attempts": 10,
    "snapshot_every": 100,
    "result_expires": 86_400,
    "publish_timeout": 10.0,
    "db_retries": 5,
    "db_retry_delay": 1.0,
    "db_pool_size": 5,
}


def variable(spec: dataclasses.Field[Any]) -> str:
    name: str = spec.metadata["env"]
    return name


FIELDS = dataclasses.fields(Settings)
INTEGERS = [spec for spec in FIELDS if spec.type == "int"]
NUMBERS = [spec for spec in FIELDS if spec.type == "float"]


def refused(env: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as raised:
        Settings.from_env(env)
    return str(raised.value)


# -- defaults -----------------------------------------------------------------------------


def test_nothing_set_gives_the_documented_defaults() -> None:
    settings = Settings.from_env({})

    assert {name: getattr(settings, name) for name in DEFAULTS} == DEFAULTS
    assert settings == Settings()
    assert settings.embedded


def test_an_empty_variable_counts_as_unset() -> None:
    env = {variable(spec): "" for spec in FIELDS}

    assert Settings.from_env(env) == Settings()


def test_variables_of_other_programs_are_ignored() -> None:
    settings = Settings.from_env({"DATABASE_URL": "mysql://x", "ORDERS_UNKNOWN": "1"})

    assert settings == Settings()


def test_an_explicit_mapping_is_read_instead_of_the_environment() -> None:
    # In a child process, so this process's environment stays as it is.
    code = (
        "from bootstrap import Settings\n"
        "print(Settings.from_env({}).db_retries, Settings.from_env().db_retries)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "ORDERS_DB_RETRIES": "9"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert done.returncode == 0, done.stderr[-500:]
    assert done.stdout.split() == ["5", "9"]


def test_every_setting_has_an_orders_variable_and_a_meaning() -> None:
    names = [variable(spec) for spec in FIELDS]

    assert all(name.startswith("ORDERS_") for name in names)
    assert len(set(names)) == len(names)
    assert all(spec.metadata["doc"] for spec in FIELDS)


# -- each variable parsed --------------------------------------------------------------

PARSED = [
    ("ORDERS_DATABASE_URL", "postgresql+psycopg2://orders@db:5432/orders", "database_url"),
    ("ORDERS_DATABASE_URL", "sqlite:////var/lib/orders/orders.db", "database_url"),
    ("ORDERS_BROKER_URL", "redis://redis:6379/0", "broker_url"),
    ("ORDERS_BROKER_URL", "rediss://redis:6380/0", "broker_url"),
    ("ORDERS_BROKER_URL", "memory://", "broker_url"),
    ("ORDERS_RESULT_BACKEND", "redis://redis:6379/1", "result_backend"),
    ("ORDERS_RESULT_BACKEND", "cache+memory://", "result_backend"),
    ("ORDERS_VISIBILITY_TIMEOUT", "7200", "visibility_timeout"),
    ("ORDERS_TASK_TIME_LIMIT", "60", "task_time_limit"),
    ("ORDERS_COMMAND_TIME_LIMIT", "5", "command_time_limit"),
    ("ORDERS_CONFLICT_ATTEMPTS", "1", "conflict_attempts"),
    ("ORDERS_SNAPSHOT_EVERY", "0", "snapshot_every"),
    ("ORDERS_RESULT_EXPIRES", "60", "result_expires"),
    ("ORDERS_PUBLISH_TIMEOUT", "2.5", "publish_timeout"),
    ("ORDERS_PUBLISH_TIMEOUT", "0.5", "publish_timeout"),
    ("ORDERS_DB_RETRIES", "0", "db_retries"),
    ("ORDERS_DB_RETRY_DELAY", "0", "db_retry_delay"),
    ("ORDERS_DB_RETRY_DELAY", "0.25", "db_retry_delay"),
    ("ORDERS_DB_POOL_SIZE", "16", "db_pool_size"),
]


@pytest.mark.parametrize(
    ("name", "raw", "attribute"), PARSED, ids=[f"{n}={r}" for n, r, _ in PARSED]
)
def test_each_variable_is_parsed_into_its_setting(name: str, raw: str, attribute: str) -> None:
    settings = Settings.from_env({name: raw})

    value = getattr(settings, attribute)
    kind = type(DEFAULTS[attribute]) if DEFAULTS[attribute] is not None else str
    assert isinstance(value, kind)
    assert value == kind(raw)
    # The others keep their defaults.
    changed = {key for key in DEFAULTS if getattr(settings, key) != DEFAULTS[key]}
    assert changed <= {attribute}


def test_all_variables_at_once() -> None:
    settings = Settings.from_env(
        {
            "ORDERS_DATABASE_URL": "postgresql+psycopg2://orders@db/orders",
            "ORDERS_BROKER_URL": "redis://redis:6379/0",
            "ORDERS_RESULT_BACKEND": "redis://redis:6379/1",
            "ORDERS_VISIBILITY_TIMEOUT": "900",
            "ORDERS_TASK_TIME_LIMIT": "120",
            "ORDERS_COMMAND_TIME_LIMIT": "15",
            "ORDERS_CONFLICT_ATTEMPTS": "30",
            "ORDERS_SNAPSHOT_EVERY": "5",
            "ORDERS_RESULT_EXPIRES": "3600",
            "ORDERS_PUBLISH_TIMEOUT": "3",
            "ORDERS_DB_RETRIES": "3",
            "ORDERS_DB_RETRY_DELAY": "0.2",
            "ORDERS_DB_POOL_SIZE": "12",
        }
    )

    assert {name: getattr(settings, name) for name in DEFAULTS} == {
        "database_url": "postgresql+psycopg2://orders@db/orders",
        "broker_url": "redis://redis:6379/0",
        "result_backend": "redis://redis:6379/1",
        "visibility_timeout": 900,
        "task_time_limit": 120,
        "command_time_limit": 15,
        "conflict_attempts": 30,
        "snapshot_every": 5,
        "result_expires": 3600,
        "publish_timeout": 3.0,
        "db_retries": 3,
        "db_retry_delay": 0.2,
        "db_pool_size": 12,
    }
    assert not settings.embedded
    assert settings.endpoints.outcome_backend == "redis://redis:6379/1"


# -- bad values: a ConfigError that names the variable ------------------------------


@pytest.mark.parametrize("spec", INTEGERS, ids=variable)
@pytest.mark.parametrize("raw", ["ten", "1.5", "1e3", "0x10"])
def test_an_integer_setting_refuses_a_non_integer(spec: dataclasses.Field[Any], raw: str) -> None:
    message = refused({variable(spec): raw})

    assert message == f"{variable(spec)} must be an integer, got {raw!r}"


@pytest.mark.parametrize("spec", NUMBERS, ids=variable)
@pytest.mark.parametrize("raw", ["ten", "nan", "1,5"])
def test_a_number_setting_refuses_a_non_number(spec: dataclasses.Field[Any], raw: str) -> None:
    message = refused({variable(spec): raw})

    assert message.startswith(f"{variable(spec)} must be ")


BELOW_MINIMUM = [
    ("ORDERS_VISIBILITY_TIMEOUT", "0", "must be at least 1, got 0"),
    ("ORDERS_TASK_TIME_LIMIT", "0", "must be at least 1, got 0"),
    ("ORDERS_COMMAND_TIME_LIMIT", "0", "must be at least 1, got 0"),
    ("ORDERS_CONFLICT_ATTEMPTS", "0", "must be at least 1, got 0"),
    ("ORDERS_SNAPSHOT_EVERY", "-1", "must be at least 0, got -1"),
    ("ORDERS_RESULT_EXPIRES", "0", "must be at least 1, got 0"),
    ("ORDERS_DB_RETRIES", "-1", "must be at least 0, got -1"),
    ("ORDERS_PUBLISH_TIMEOUT", "0.4", "must be at least 0.5, got 0.4"),
    ("ORDERS_PUBLISH_TIMEOUT", "-inf", "must be a finite number, got '-inf'"),
    ("ORDERS_DB_RETRY_DELAY", "-0.1", "must be at least 0.0, got -0.1"),
    ("ORDERS_DB_POOL_SIZE", "0", "must be at least 1, got 0"),
]


@pytest.mark.parametrize(
    ("name", "raw", "words"), BELOW_MINIMUM, ids=[f"{n}={r}" for n, r, _ in BELOW_MINIMUM]
)
def test_a_value_below_the_minimum_is_refused(name: str, raw: str, words: str) -> None:
    assert refused({name: raw}) == f"{name} {words}"


@pytest.mark.parametrize("raw", ["inf", "1e309"])
def test_an_infinite_publish_timeout_is_refused(raw: str) -> None:
    refused({"ORDERS_PUBLISH_TIMEOUT": raw})


@pytest.mark.parametrize(
    "raw", ["postgresql://orders@db/orders", "postgresql+psycopg2://orders@db/orders"]
)
def test_a_postgresql_url_gets_the_stores_driver_whatever_else_is_installed(raw: str) -> None:
    settings = Settings.from_env({"ORDERS_DATABASE_URL": raw})
    assert settings.database_url == raw  # shown as written (orders config)

    engine = build_engine(settings.database_url)  # lazy: connects to nothing
    assert engine.dialect.driver == "psycopg2"
    engine.dispose()


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (
            "postgresql+psycopg://orders@db/orders",
            "names the driver psycopg; the store speaks psycopg2: write "
            "postgresql+psycopg2:// or postgresql://",
        ),
        ("postgresql+asyncpg://orders@db/orders", "names the driver asyncpg"),
        ("sqlite+aiosqlite:///orders.db", "the store speaks pysqlite"),
        ("mysql://orders@db/orders", "must be a postgresql:// or sqlite:// URL, got mysql"),
        ("mysql+pymysql://orders@db/orders", "got mysql"),
        ("oracle://orders@db", "got oracle"),
        ("postgres://orders@db/orders", "got postgres"),  # SQLAlchemy's name is postgresql
        ("not a url", "is not a database URL: 'not a url'"),
        ("/var/lib/orders.db", "is not a database URL"),
    ],
)
def test_a_database_url_the_store_cannot_use_is_refused(raw: str, words: str) -> None:
    message = refused({"ORDERS_DATABASE_URL": raw})

    assert message.startswith("ORDERS_DATABASE_URL ")
    assert words in message


@pytest.mark.parametrize(
    "raw", ["amqp://guest@rabbit//", "sqs://", "redis:/localhost", "localhost:6379", "REDIS://r"]
)
def test_a_broker_url_that_is_not_redis_or_memory_is_refused(raw: str) -> None:
    message = refused({"ORDERS_BROKER_URL": raw})

    assert message == (
        f"ORDERS_BROKER_URL must start with one of redis://, rediss://, memory://, got {raw!r}"
    )


@pytest.mark.parametrize("raw", ["rpc://", "db+postgresql://orders@db/orders", "memory://"])
def test_a_result_backend_that_is_not_redis_or_cache_memory_is_refused(raw: str) -> None:
    message = refused({"ORDERS_RESULT_BACKEND": raw})

    assert message.startswith("ORDERS_RESULT_BACKEND must start with one of ")
    assert repr(raw) in message


@pytest.mark.parametrize(
    ("visibility", "limit"), [("300", "300"), ("299", "300"), ("100", None), ("60", "3600")]
)
def test_a_visibility_timeout_not_above_the_task_time_limit_is_refused(
    visibility: str, limit: str | None
) -> None:
    env = {"ORDERS_VISIBILITY_TIMEOUT": visibility}
    if limit is not None:
        env["ORDERS_TASK_TIME_LIMIT"] = limit

    message = refused(env)

    assert message == (
        f"ORDERS_VISIBILITY_TIMEOUT ({visibility}) must be above "
        f"ORDERS_TASK_TIME_LIMIT ({limit or 300})"
    )


def test_a_visibility_timeout_not_above_the_command_time_limit_is_refused() -> None:
    env = {
        "ORDERS_VISIBILITY_TIMEOUT": "40",
        "ORDERS_TASK_TIME_LIMIT": "20",
        "ORDERS_COMMAND_TIME_LIMIT": "40",
    }

    assert (
        refused(env)
        == "ORDERS_VISIBILITY_TIMEOUT (40) must be above ORDERS_COMMAND_TIME_LIMIT (40)"
    )


def test_a_visibility_timeout_just_above_the_task_time_limit_is_accepted() -> None:
    settings = Settings.from_env({"ORDERS_VISIBILITY_TIMEOUT": "301"})

    assert (settings.visibility_timeout, settings.task_time_limit) == (301, 300)


def test_a_config_error_is_a_value_error() -> None:
    assert issubclass(ConfigError, ValueError)


# -- describe ---------------------------------------------------------------------------

SECRET_URLS = {
    "ORDERS_DATABASE_URL": (
        "postgresql+psycopg2://orders:s3cret@db:5432/orders",
        "postgresql+psycopg2://orders:***@db:5432/orders",
    ),
    "ORDERS_BROKER_URL": ("redis://:s3cret@redis:6379/0", "redis://:***@redis:6379/0"),
    "ORDERS_RESULT_BACKEND": (
        "rediss://default:s3cret@redis:6380/1",
        "rediss://default:***@redis:6380/1",
    ),
}


def test_describe_hides_passwords_in_urls() -> None:
    settings = Settings.from_env({name: raw for name, (raw, _) in SECRET_URLS.items()})

    shown = {name: value for name, value, _ in settings.describe()}

    for name, (_, hidden) in SECRET_URLS.items():
        assert shown[name] == hidden
    assert not any("s3cret" in value for value in shown.values())
    # The settings themselves keep the password: only the printout hides it.
    assert settings.database_url == SECRET_URLS["ORDERS_DATABASE_URL"][0]


@pytest.mark.parametrize(
    ("name", "url", "hidden"),
    [
        (  # an escaped @ and : in the password
            "ORDERS_DATABASE_URL",
            "postgresql+psycopg2://orders:p%40ss%3Aword@db/orders",
            "postgresql+psycopg2://orders:***@db/orders",
        ),
        (  # the user name is the password
            "ORDERS_DATABASE_URL",
            "postgresql+psycopg2://s3cret:s3cret@db/orders",
            "postgresql+psycopg2://s3cret:***@db/orders",
        ),
        (  # the password is also part of the host name
            "ORDERS_BROKER_URL",
            "redis://user:s3cret@s3cret-host:6379/0",
            "redis://user:***@s3cret-host:6379/0",
        ),
    ],
    ids=["escaped characters", "user is password", "password in host"],
)
def test_describe_hides_awkward_passwords(name: str, url: str, hidden: str) -> None:
    settings = Settings.from_env({name: url})

    shown = {variable_: value for variable_, value, _ in settings.describe()}

    assert shown[name] == hidden


def test_describe_hides_a_password_given_as_a_query_parameter() -> None:
    settings = Settings.from_env(
        {"ORDERS_DATABASE_URL": "postgresql+psycopg2://orders@db/orders?password=s3cret"}
    )

    assert not any("s3cret" in value for _, value, _ in settings.describe())


def test_describe_lists_every_setting_with_its_value_and_meaning() -> None:
    settings = Settings.from_env({"ORDERS_DB_RETRIES": "3"})

    rows = list(settings.describe())

    assert [name for name, _, _ in rows] == [variable(spec) for spec in FIELDS]
    shown = {name: value for name, value, _ in rows}
    assert shown["ORDERS_DB_RETRIES"] == "3"
    assert shown["ORDERS_DATABASE_URL"] == "sqlite:///orders.db"
    assert shown["ORDERS_RESULT_BACKEND"] == "None"
    assert all(meaning for _, _, meaning in rows)


# -- what the worker does with them -------------------------------------------------------


def test_commands_run_under_their_own_time_limit_and_other_tasks_under_the_task_one() -> None:
    settings = Settings.from_env(
        {"ORDERS_TASK_TIME_LIMIT": "200", "ORDERS_COMMAND_TIME_LIMIT": "25"}
    )
    app = Celery("orders", set_as_current=False)  # as create_app builds it, minus the runtime
    app.conf.update(celery_config(settings))
    tasks.register(app)

    command, wake = app.tasks[HANDLE_COMMAND], app.tasks[WAKE_PROJECTIONS]
    assert (command.soft_time_limit, command.time_limit) == (15, 25)
    assert (wake.soft_time_limit, wake.time_limit) == (190, 200)
