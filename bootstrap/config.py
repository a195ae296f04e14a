"""Configuration of the system's processes: the ORDERS_* environment variables, read
and checked in one place, each with its meaning (``orders config`` prints them).

A producer reads only the few it needs (``commands/transport.py``: the broker, the
result backend, the publish timeout); everything else is read here.

With nothing set the system runs embedded: SQLite in ./orders.db and Celery's in-memory
transport with an in-process worker. Production sets the database and broker URLs.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import Field, dataclass, field, fields
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from commands.transport import (
    BACKEND_SCHEMES,
    BROKER_SCHEMES,
    BROKER_URL_VARIABLE,
    DEFAULT_BROKER_URL,
    MIN_PUBLISH_TIMEOUT,
    PUBLISH_TIMEOUT_VARIABLE,
    REDIS_PASSWORD_VARIABLE,
    RESULT_BACKEND_VARIABLE,
    BrokerConfigError,
    Endpoints,
    checked_url,
    redacted,
    with_redis_password,
)
from domain.decide import DEFAULT_MAX_LINES

Parse = Callable[[str, str], Any]


class ConfigError(ValueError):
    """An ORDERS_* variable holds a value the system cannot use."""


def _integer(minimum: int) -> Parse:
    def parse(name: str, raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
        if value < minimum:
            raise ConfigError(f"{name} must be at least {minimum}, got {value}")
        return value

    return parse


DRIVERS = {"postgresql": "psycopg2", "sqlite": "pysqlite"}
"""The one driver the store speaks on each database (its SQL is written for them)."""


def _database_url(name: str, raw: str) -> str:
    try:
        url = make_url(raw)
        backend = url.get_backend_name()
    except (ArgumentError, ValueError):
        raise ConfigError(f"{name} is not a database URL: {redacted(raw)!r}") from None
    if backend not in DRIVERS:
        raise ConfigError(f"{name} must be a postgresql:// or sqlite:// URL, got {backend}")
    # A bare scheme means the store's driver (store/postgres/backend.py says so to
    # SQLAlchemy, which would take psycopg 3 for it when that is installed).
    driver = url.drivername.partition("+")[2] or DRIVERS[backend]
    if driver != DRIVERS[backend]:
        raise ConfigError(
            f"{name} names the driver {driver}; the store speaks {DRIVERS[backend]}: "
            f"write {backend}+{DRIVERS[backend]}:// or {backend}://"
        )
    return raw


def _number(minimum: float) -> Parse:
    def parse(name: str, raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(f"{name} must be a number, got {raw!r}") from None
        if not math.isfinite(value):
            raise ConfigError(f"{name} must be a finite number, got {raw!r}")
        if value < minimum:
            raise ConfigError(f"{name} must be at least {minimum}, got {raw}")
        return value

    return parse


def _secret(name: str, raw: str) -> str:
    if len(raw) < 16:
        raise ConfigError(f"{name} must be at least 16 characters long")
    return raw


def _password(name: str, raw: str) -> str:
    """Any characters: it goes into its URLs percent-encoded (``Settings``)."""
    return raw


def with_database_password(url: str, password: str | None) -> str:
    """A PostgreSQL URL with ``password`` in it, encoded so that SQLAlchemy reads back
    exactly that password; the query (``?sslmode=require``) is kept. A URL with a
    password of its own (in the user part or ``?password=``), a SQLite URL, or no
    password: the URL as it is."""
    if not password:
        return url
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        return url
    if parsed.password is not None or "password" in parsed.query:
        return url
    if parsed.username is None:  # SQLAlchemy would leave the password out
        raise ConfigError(f"needs a user name for its password, got {redacted(url)!r}")
    return parsed.set(password=password).render_as_string(hide_password=False)


def _on_off(name: str, raw: str) -> bool:
    if raw not in ("on", "off"):
        raise ConfigError(f"{name} must be on or off, got {raw!r}")
    return raw == "on"


def _choice(*choices: str) -> Parse:
    def parse(name: str, raw: str) -> str:
        if raw not in choices:
            raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
        return raw

    return parse


def _url(schemes: tuple[str, ...]) -> Parse:
    def parse(name: str, raw: str) -> str:
        try:
            return checked_url(name, raw, schemes)
        except BrokerConfigError as error:
            raise ConfigError(str(error)) from None

    return parse


def _env(name: str, parse: Parse, doc: str, **kwargs: Any) -> Any:
    return field(metadata={"env": name, "parse": parse, "doc": doc}, **kwargs)


@dataclass(frozen=True)
class Settings:
    database_url: str = _env(
        "ORDERS_DATABASE_URL",
        _database_url,
        "SQLAlchemy URL of the event store, e.g. postgresql+psycopg2://orders@db/orders",
        default="sqlite:///orders.db",
    )
    database_password: str | None = _env(
        "ORDERS_DATABASE_PASSWORD",
        _password,
        "password for the database URLs that hold none (any characters; encoded for them)",
        default=None,
    )
    broker_url: str = _env(
        BROKER_URL_VARIABLE,
        _url(BROKER_SCHEMES),
        "Celery broker, e.g. redis://localhost:6379/0; memory:// runs embedded",
        default=DEFAULT_BROKER_URL,
    )
    result_backend: str | None = _env(
        RESULT_BACKEND_VARIABLE,
        _url(BACKEND_SCHEMES),
        "where producers read outcomes; defaults to the broker when it is Redis",
        default=None,
    )
    redis_password: str | None = _env(
        REDIS_PASSWORD_VARIABLE,
        _password,
        "password for the broker's and result backend's Redis URLs that hold none",
        default=None,
    )
    visibility_timeout: int = _env(
        "ORDERS_VISIBILITY_TIMEOUT",
        _integer(1),
        "seconds before Redis redelivers an unacknowledged task; keep it above the time limit",
        default=3600,
    )
    task_time_limit: int = _env(
        "ORDERS_TASK_TIME_LIMIT", _integer(1), "hard limit in seconds for one task", default=300
    )
    command_time_limit: int = _env(
        "ORDERS_COMMAND_TIME_LIMIT",
        _integer(1),
        "hard limit in seconds for one command; a command takes milliseconds",
        default=30,
    )
    conflict_attempts: int = _env(
        "ORDERS_CONFLICT_ATTEMPTS",
        _integer(1),
        "decisions per command before a run of version conflicts fails it",
        default=10,
    )
    snapshot_every: int = _env(
        "ORDERS_SNAPSHOT_EVERY",
        _integer(0),
        "events between snapshots of an order (0 turns snapshots off)",
        default=100,
    )
    result_expires: int = _env(
        "ORDERS_RESULT_EXPIRES",
        _integer(1),
        "seconds an outcome stays readable in the result backend",
        default=86_400,
    )
    publish_timeout: float = _env(
        PUBLISH_TIMEOUT_VARIABLE,
        _number(MIN_PUBLISH_TIMEOUT),
        "seconds a send may spend retrying an unreachable broker before it fails",
        default=10.0,
    )
    db_retries: int = _env(
        "ORDERS_DB_RETRIES",
        _integer(0),
        "times a command is retried while the database is unreachable, then it fails",
        default=5,
    )
    sweep_interval: float = _env(
        "ORDERS_SWEEP_INTERVAL",
        _number(0.5),
        "seconds between sweeps that bring every read model up to date (beat)",
        default=10.0,
    )
    projection_batch: int = _env(
        "ORDERS_PROJECTION_BATCH",
        _integer(1),
        "events a projection applies per transaction",
        default=500,
    )
    db_retry_delay: float = _env(
        "ORDERS_DB_RETRY_DELAY",
        _number(0.0),
        "first delay in seconds before such a retry; doubles each time, capped at 30",
        default=1.0,
    )
    max_lines: int = _env(
        "ORDERS_MAX_LINES",
        _integer(1),
        "distinct items one order may hold; an AddItem past it is rejected (TooManyLines)",
        default=DEFAULT_MAX_LINES,
    )
    read_database_url: str | None = _env(
        "ORDERS_READ_DATABASE_URL",
        _database_url,
        "where the read-model queries go (the API, orders show/list/...), e.g. a replica; "
        "defaults to ORDERS_DATABASE_URL",
        default=None,
    )
    read_database_password: str | None = _env(
        "ORDERS_READ_DATABASE_PASSWORD",
        _password,
        "password for ORDERS_READ_DATABASE_URL when it holds none; "
        "defaults to ORDERS_DATABASE_PASSWORD",
        default=None,
    )
    api_consistency_wait: float = _env(
        "ORDERS_API_CONSISTENCY_WAIT",
        _number(0.0),
        "seconds the API waits for the read models to show a command (?after_command=)",
        default=2.0,
    )
    api_token: str | None = _env(
        "ORDERS_API_TOKEN",
        _secret,
        "when set, every /api request must carry 'Authorization: Bearer <it>'",
        default=None,
    )
    metrics_port: int | None = _env(
        "ORDERS_METRICS_PORT",
        _integer(1),
        "port a worker serves Prometheus metrics on (every pool process summed); off when unset",
        default=None,
    )
    max_lag_seconds: float = _env(
        "ORDERS_MAX_LAG_SECONDS",
        _number(0.0),
        "seconds a read model may lag before orders health calls it degraded",
        default=60.0,
    )
    log_format: str = _env(
        "ORDERS_LOG_FORMAT",
        _choice("text", "json"),
        "text, or json: one object per line with the command's ids (what log shippers read)",
        default="text",
    )
    retention_days: int | None = _env(
        "ORDERS_RETENTION_DAYS",
        _integer(1),
        "when set, beat prunes command-log rows and dead letters older than this daily",
        default=None,
    )
    db_pool_size: int = _env(
        "ORDERS_DB_POOL_SIZE",
        _integer(1),
        "PostgreSQL connections a process keeps open; with --pool threads, its thread count",
        default=5,
    )
    prepared_statements: bool = _env(
        "ORDERS_PREPARED_STATEMENTS",
        _on_off,
        "on, or off behind a pooler in transaction mode (PgBouncer): the store then sends "
        "its statements whole instead of PREPAREd on the session",
        default=True,
    )

    def __post_init__(self) -> None:
        self._insert_passwords()
        limits = [
            ("ORDERS_TASK_TIME_LIMIT", self.task_time_limit),
            ("ORDERS_COMMAND_TIME_LIMIT", self.command_time_limit),
        ]
        for variable, limit in limits:
            if self.visibility_timeout <= limit:
                # Otherwise Redis hands a still-running task to a second worker.
                raise ConfigError(
                    f"ORDERS_VISIBILITY_TIMEOUT ({self.visibility_timeout}) must be above "
                    f"{variable} ({limit})"
                )

    def _insert_passwords(self) -> None:
        """The *_PASSWORD settings go into the URLs that hold none, percent-encoded, so
        that every consumer reads complete URLs from here (and compose files need not
        build URLs out of passwords)."""
        read_password = self.read_database_password or self.database_password
        insert = {
            "database_url": (with_database_password, self.database_password),
            "read_database_url": (with_database_password, read_password),
            "broker_url": (with_redis_password, self.redis_password),
            "result_backend": (with_redis_password, self.redis_password),
        }
        for spec in fields(self):
            if spec.name not in insert or getattr(self, spec.name) is None:
                continue
            url = getattr(self, spec.name)
            complete, password = insert[spec.name]
            variable = spec.metadata["env"]
            try:
                url = complete(url, password)
            except ConfigError as error:
                raise ConfigError(f"{variable} {error}") from None
            except (ArgumentError, ValueError):
                raise ConfigError(f"{variable} is not a URL: {redacted(url)!r}") from None
            object.__setattr__(self, spec.name, url)  # frozen: only while it is being built

    @property
    def embedded(self) -> bool:
        return self.broker_url.startswith("memory://")

    @property
    def endpoints(self) -> Endpoints:
        return Endpoints(self.broker_url, self.result_backend)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        source = os.environ if env is None else env
        values = {}
        for spec in fields(cls):
            raw = source.get(spec.metadata["env"], "")
            if raw != "":
                values[spec.name] = spec.metadata["parse"](spec.metadata["env"], raw)
        return cls(**values)

    def describe(self) -> Iterator[tuple[str, str, str]]:
        """(variable, value, meaning) for each setting, for ``orders config``."""
        for spec in fields(self):
            yield spec.metadata["env"], str(self._shown(spec)), spec.metadata["doc"]

    def __repr__(self) -> str:
        # Passwords hidden: a repr ends up in logs, tracebacks and error reports.
        shown = ", ".join(f"{spec.name}={self._shown(spec)!r}" for spec in fields(self))
        return f"{type(self).__name__}({shown})"

    def _shown(self, spec: Field[Any]) -> object:
        value = getattr(self, spec.name)
        if spec.metadata["parse"] in (_secret, _password) and value:
            return "***"
        return redacted(value) if isinstance(value, str) else value
