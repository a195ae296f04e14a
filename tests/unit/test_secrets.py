"""Passwords: given apart from the URLs (ORDERS_DATABASE_PASSWORD, ORDERS_REDIS_PASSWORD),
put into them encoded so that every driver reads back exactly the password, and never
printed: not by ``orders config``, not in an error message, not in a repr.

``Settings.from_env`` is given plain dicts; ``orders config`` runs in a child process
with an environment of its own, so this process's environment is never changed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from celery import Celery
from celery.backends.redis import RedisBackend
from kombu.utils.url import parse_url as kombu_url
from redis.connection import SSLConnection
from redis.connection import parse_url as redis_url
from sqlalchemy.engine import make_url

from bootstrap import ConfigError, Settings
from bootstrap.config import with_database_password
from commands.client import CommandClient
from commands.transport import redacted, with_redis_password

ROOT = Path(__file__).resolve().parents[2]

PASSWORDS = [
    "p@ss/w:rd",
    "#hash?query",
    "100%",
    "%40 stays %40",  # already looks encoded: must not be decoded once too often
    "with spaces ",
    "a+b=c&d;e",
    "quote'\"back\\slash",
    "[brackets]{braces}",
    "ünïcødé €",
    "@/:#%? all of them",
]


def ids(password: str) -> str:
    return quote(password, safe="")


def redis_parse_url(url: str) -> dict[str, Any]:
    """What redis-py makes of a URL (the wake-ups' and the health check's client)."""
    parsed: dict[str, Any] = redis_url(url)  # type: ignore[no-untyped-call]
    return parsed


def kombu_parse_url(url: str) -> dict[str, Any]:
    """What kombu makes of a URL (the broker connection)."""
    parsed: dict[str, Any] = kombu_url(url)
    return parsed


# -- the database URL -------------------------------------------------------------------


@pytest.mark.parametrize("password", PASSWORDS, ids=ids)
def test_sqlalchemy_and_psycopg2_read_back_the_exact_database_password(password: str) -> None:
    url = with_database_password(
        "postgresql+psycopg2://orders_writer@db:5432/orders?sslmode=require", password
    )

    parsed = make_url(url)
    assert parsed.password == password
    assert (parsed.username, parsed.host, parsed.port, parsed.database) == (
        "orders_writer",
        "db",
        5432,
        "orders",
    )
    assert dict(parsed.query) == {"sslmode": "require"}
    # What psycopg2.connect is called with.
    _, connect_args = parsed.get_dialect()().create_connect_args(parsed)
    assert connect_args["password"] == password
    assert connect_args["sslmode"] == "require"


def test_tls_settings_of_a_database_url_pass_through() -> None:
    raw = (
        "postgresql+psycopg2://orders_reader@db/orders"
        "?sslmode=verify-full&sslrootcert=/etc/ssl/ca.pem&application_name=api"
    )

    parsed = make_url(with_database_password(raw, "s3cret"))

    assert parsed.password == "s3cret"
    assert dict(parsed.query) == {
        "sslmode": "verify-full",
        "sslrootcert": "/etc/ssl/ca.pem",
        "application_name": "api",
    }


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg2://orders:own@db/orders",  # its own password wins
        "postgresql+psycopg2://orders@db/orders?password=own",
        "sqlite:///orders.db",  # no passwords in SQLite
        "sqlite://",
    ],
)
def test_a_database_url_with_a_password_of_its_own_or_none_to_take_is_left_alone(
    url: str,
) -> None:
    assert with_database_password(url, "s3cret") == url


@pytest.mark.parametrize("password", [None, ""])
def test_no_database_password_leaves_the_url_alone(password: str | None) -> None:
    url = "postgresql+psycopg2://orders@db/orders?sslmode=require"

    assert with_database_password(url, password) == url


# -- the Redis URLs ---------------------------------------------------------------------


@pytest.mark.parametrize("password", PASSWORDS, ids=ids)
@pytest.mark.parametrize("scheme", ["redis", "rediss"])
def test_redis_py_kombu_and_celery_read_back_the_exact_redis_password(
    scheme: str, password: str
) -> None:
    query = "?ssl_cert_reqs=required" if scheme == "rediss" else ""
    url = with_redis_password(f"{scheme}://redis:6379/2{query}", password)

    assert redis_parse_url(url)["password"] == password  # redis-py: wake-ups, health
    assert kombu_parse_url(url)["password"] == password  # the broker
    backend = RedisBackend(url=url, app=Celery(set_as_current=False))  # connects lazily
    assert backend.connparams["password"] == password  # the result backend
    assert (backend.connparams["host"], backend.connparams["db"]) == ("redis", 2)


def test_a_rediss_url_keeps_its_tls_settings() -> None:
    url = with_redis_password("rediss://redis:6380/0?ssl_cert_reqs=required", "s3cret")

    assert url == "rediss://:s3cret@redis:6380/0?ssl_cert_reqs=required"
    options = redis_parse_url(url)
    assert options["connection_class"] is SSLConnection
    assert options["ssl_cert_reqs"] == "required"


def test_a_redis_acl_user_keeps_its_name() -> None:
    url = with_redis_password("redis://orders@redis:6379/0", "p@ss")

    assert redis_parse_url(url)["username"] == "orders"
    assert redis_parse_url(url)["password"] == "p@ss"


@pytest.mark.parametrize(
    "url",
    [
        "redis://:own@redis:6379/0",
        "redis://user:own@redis:6379/0",
        "redis://redis:6379/0?password=own",
        "memory://localhost/",
        "cache+memory://",
    ],
)
def test_a_redis_url_with_a_password_of_its_own_or_no_redis_is_left_alone(url: str) -> None:
    assert with_redis_password(url, "s3cret") == url


# -- Settings ---------------------------------------------------------------------------


def test_the_database_password_goes_into_both_database_urls() -> None:
    settings = Settings.from_env(
        {
            "ORDERS_DATABASE_URL": "postgresql+psycopg2://orders_reader@db/orders",
            "ORDERS_READ_DATABASE_URL": "postgresql+psycopg2://orders_reader@replica/orders",
            "ORDERS_DATABASE_PASSWORD": "p@ss/w#rd",
        }
    )

    assert make_url(settings.database_url).password == "p@ss/w#rd"
    assert settings.read_database_url is not None
    assert make_url(settings.read_database_url).password == "p@ss/w#rd"


def test_the_read_database_password_is_the_read_urls_alone() -> None:
    settings = Settings.from_env(
        {
            "ORDERS_DATABASE_URL": "postgresql+psycopg2://orders_writer@db/orders",
            "ORDERS_DATABASE_PASSWORD": "writer:pw",
            "ORDERS_READ_DATABASE_URL": "postgresql+psycopg2://orders_reader@db/orders",
            "ORDERS_READ_DATABASE_PASSWORD": "reader@pw",
        }
    )

    assert make_url(settings.database_url).password == "writer:pw"
    assert settings.read_database_url is not None
    assert make_url(settings.read_database_url).password == "reader@pw"


def test_the_redis_password_goes_into_the_broker_and_the_result_backend() -> None:
    settings = Settings.from_env(
        {
            "ORDERS_BROKER_URL": "redis://redis:6379/0",
            "ORDERS_RESULT_BACKEND": "rediss://results:6380/1?ssl_cert_reqs=required",
            "ORDERS_REDIS_PASSWORD": "s3c#ret/?",
        }
    )

    assert redis_parse_url(settings.broker_url)["password"] == "s3c#ret/?"
    assert settings.result_backend is not None
    assert redis_parse_url(settings.result_backend)["password"] == "s3c#ret/?"
    assert redis_parse_url(settings.result_backend)["ssl_cert_reqs"] == "required"


def test_the_default_result_backend_the_broker_has_the_password_too() -> None:
    settings = Settings.from_env(
        {"ORDERS_BROKER_URL": "redis://redis:6379/0", "ORDERS_REDIS_PASSWORD": "s3cret"}
    )

    assert redis_parse_url(settings.endpoints.outcome_backend)["password"] == "s3cret"


def test_a_producers_client_takes_the_redis_password_from_the_environment_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # `orders send` and any Python producer build CommandClient() from ORDERS_* alone.
    monkeypatch.setenv("ORDERS_BROKER_URL", "redis://redis:6379/0")
    monkeypatch.setenv("ORDERS_RESULT_BACKEND", "redis://results:6379/1")
    monkeypatch.setenv("ORDERS_REDIS_PASSWORD", "p@ss word/#")
    client = CommandClient()
    try:
        assert redis_parse_url(client._app.conf.broker_url)["password"] == "p@ss word/#"
        assert redis_parse_url(client._app.conf.result_backend)["password"] == "p@ss word/#"
    finally:
        client.close()
    # An explicit URL is taken as given.
    explicit = CommandClient("redis://other:6379/0", "redis://other:6379/0")
    try:
        assert redis_parse_url(explicit._app.conf.broker_url).get("password") is None
    finally:
        explicit.close()


def test_with_no_password_variables_the_urls_are_as_given() -> None:
    env = {
        "ORDERS_DATABASE_URL": "postgresql+psycopg2://orders@db/orders?sslmode=require",
        "ORDERS_BROKER_URL": "rediss://redis:6380/0?ssl_cert_reqs=required",
    }

    settings = Settings.from_env(env)

    assert settings.database_url == env["ORDERS_DATABASE_URL"]
    assert settings.broker_url == env["ORDERS_BROKER_URL"]


SECRET = "Zq7@x/y:z#w%v?u s"
ENCODED = quote(SECRET, safe="")


def secret_env() -> dict[str, str]:
    """Every way a password reaches the settings: in the URLs and in the variables."""
    return {
        "ORDERS_DATABASE_URL": "postgresql+psycopg2://orders_writer@db/orders",
        "ORDERS_DATABASE_PASSWORD": SECRET,
        "ORDERS_READ_DATABASE_URL": f"postgresql+psycopg2://orders_reader:{ENCODED}@db/orders",
        "ORDERS_READ_DATABASE_PASSWORD": SECRET + "-read",
        "ORDERS_BROKER_URL": "redis://redis:6379/0",
        "ORDERS_RESULT_BACKEND": f"redis://:{ENCODED}@results:6379/1",
        "ORDERS_REDIS_PASSWORD": SECRET,
        "ORDERS_API_TOKEN": SECRET + "-token-long-enough",
    }


def assert_no_secret(text: str) -> None:
    for fragment in (SECRET, ENCODED, "Zq7", "x/y:z"):
        assert fragment not in text


def test_neither_describe_nor_repr_shows_a_password() -> None:
    settings = Settings.from_env(secret_env())

    rows = list(settings.describe())

    assert_no_secret(repr(settings))
    assert_no_secret(" ".join(value for _, value, _ in rows))
    shown = {name: value for name, value, _ in rows}
    assert shown["ORDERS_DATABASE_PASSWORD"] == "***"
    assert shown["ORDERS_REDIS_PASSWORD"] == "***"
    assert shown["ORDERS_DATABASE_URL"] == "postgresql+psycopg2://orders_writer:***@db/orders"
    assert shown["ORDERS_BROKER_URL"] == "redis://:***@redis:6379/0"


# -- redaction --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:s3cret@redis:6379/0", "redis://:***@redis:6379/0"),
        (
            "rediss://default:s3cret@redis:6380/0?ssl_cert_reqs=required",
            "rediss://default:***@redis:6380/0?ssl_cert_reqs=required",
        ),
        (
            "postgresql+psycopg2://orders:s3cret@db/orders?sslmode=require",
            "postgresql+psycopg2://orders:***@db/orders?sslmode=require",
        ),
        (
            "postgresql://orders@db/orders?sslmode=require&password=s3cret",
            "postgresql://orders@db/orders?sslmode=require&password=***",
        ),
        ("amqp://user:s3cret@rabbit//", "amqp://user:***@rabbit//"),
        ("postgresql://orders@db/orders", "postgresql://orders@db/orders"),
        ("sqlite:///orders.db", "sqlite:///orders.db"),
        ("memory://localhost/", "memory://localhost/"),
        ("not a url", "not a url"),
        ("None", "None"),
    ],
)
def test_redacted_hides_the_password_and_keeps_the_rest(url: str, shown: str) -> None:
    assert redacted(url) == shown


@pytest.mark.parametrize(
    "url",
    [
        # Passwords written in unescaped: the URL is malformed, the password still hidden.
        "redis://:s3#cret@redis:6379/0",
        "redis://:s3/cret@redis:6379/0",
        "redis://:s3?cret@redis:6379/0",
        "postgresql://orders:s3@c/ret@db/orders",
        "postgresql://orders:s3 cret@db/orders",
        "postgresql://orders:s3[cret@db/orders",
        "postgresql://orders@db/orders?password=s3#cret",
        "postgresql://orders@db/orders?sslpassword=s3cret&sslmode=require",
        "rediss://orders:s3cret@redis/0?x=a@b",
    ],
)
def test_redacted_hides_passwords_written_in_unescaped(url: str) -> None:
    shown = redacted(url)

    assert "s3" not in shown and "cret" not in shown, shown
    assert "***" in shown


# -- error messages ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("ORDERS_BROKER_URL", "amqp://user:s3cret@rabbit//"),
        ("ORDERS_BROKER_URL", "sqs://key:s3cret@"),
        ("ORDERS_RESULT_BACKEND", "db+postgresql://orders:s3cret@db/orders"),
        ("ORDERS_DATABASE_URL", "postgresql://orders:s3cret@db:port/orders"),
        ("ORDERS_DATABASE_URL", "mysql://orders:s3cret@db/orders"),
        ("ORDERS_READ_DATABASE_URL", "postgresql://orders:s3cret@[::1/orders"),
    ],
)
def test_a_refused_url_is_named_without_its_password(name: str, raw: str) -> None:
    with pytest.raises(ConfigError) as refused:
        Settings.from_env({name: raw})

    assert str(refused.value).startswith(name)
    assert "s3cret" not in str(refused.value)


def test_a_database_url_without_a_user_name_cannot_take_the_password() -> None:
    # SQLAlchemy writes no password without a user: it would be lost without a word.
    env = {
        "ORDERS_DATABASE_URL": "postgresql:///orders?host=/var/run/postgresql",
        "ORDERS_DATABASE_PASSWORD": "s3cret",
    }

    with pytest.raises(ConfigError) as refused:
        Settings.from_env(env)

    assert str(refused.value).startswith("ORDERS_DATABASE_URL needs a user name")
    assert "s3cret" not in str(refused.value)


def test_a_unix_socket_database_url_takes_the_password() -> None:
    url = with_database_password("postgresql://orders@/orders?host=/var/run/postgresql", "p w")

    parsed = make_url(url)
    assert (parsed.username, parsed.password) == ("orders", "p w")
    assert parsed.query["host"] == "/var/run/postgresql"


def test_a_url_the_password_cannot_go_into_is_named_without_the_password() -> None:
    env = {"ORDERS_BROKER_URL": "redis://[::1/0", "ORDERS_REDIS_PASSWORD": "s3cret"}

    with pytest.raises(ConfigError) as refused:
        Settings.from_env(env)

    assert str(refused.value).startswith("ORDERS_BROKER_URL ")
    assert "s3cret" not in str(refused.value)


# -- orders config ----------------------------------------------------------------------


def orders_config(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {key: value for key, value in os.environ.items() if not key.startswith("ORDERS_")}
    return subprocess.run(
        [sys.executable, "-m", "cli", "config"],
        env={**clean, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_orders_config_prints_no_password() -> None:
    done = orders_config(secret_env())

    assert done.returncode == 0, done.stderr[-500:]
    assert_no_secret(done.stdout + done.stderr)
    assert "ORDERS_DATABASE_PASSWORD" in done.stdout
    assert "postgresql+psycopg2://orders_writer:***@db/orders" in done.stdout


def test_orders_config_hides_a_password_written_into_a_url_unescaped() -> None:
    # Malformed (SQLAlchemy reads another host), but it must not be printed either.
    done = orders_config({"ORDERS_DATABASE_URL": f"postgresql://orders:{SECRET}@db/orders"})

    assert done.returncode == 0, done.stderr[-500:]
    assert_no_secret(done.stdout + done.stderr)
    assert "postgresql://orders:***@db/orders" in done.stdout


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("ORDERS_BROKER_URL", f"amqp://user:{ENCODED}@rabbit//"),
        ("ORDERS_RESULT_BACKEND", f"rpc://user:{SECRET}@rabbit//"),
        ("ORDERS_DATABASE_URL", f"postgresql://orders:{ENCODED}@db:port/orders"),
    ],
    ids=["amqp broker", "rpc backend", "bad port"],
)
def test_orders_config_refuses_a_url_without_printing_its_password(name: str, raw: str) -> None:
    done = orders_config({**secret_env(), name: raw})

    assert done.returncode == 2, done.stdout[-500:]
    assert name in done.stderr
    assert_no_secret(done.stdout + done.stderr)
