"""docker-compose.yml, checked without a Docker engine: every command our image runs is
one the CLI accepts, every variable set on our services is one the code reads, no
secret is written in the file, and the settings each service would read connect it as
the role it should have."""

from __future__ import annotations

import re
import subprocess
from dataclasses import fields
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from redis.connection import parse_url as redis_url
from sqlalchemy.engine import make_url

from bootstrap import Settings
from bootstrap.roles import PASSWORD_VARIABLES, READER, WRITER
from cli.main import cli

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"

SERVICES = {
    "postgres",
    "redis",
    "migrate",
    "command-worker",
    "projection-worker",
    "beat",
    "api",
    "prometheus",
    "grafana",
    "flower",
}
OURS = {"migrate", "command-worker", "projection-worker", "beat", "api"}
WORKERS = {"command-worker", "projection-worker"}
ONE_SHOT = {"migrate"}

# What an operator's .env would hold, awkward characters and all.
HOST_ENV = {
    "POSTGRES_PASSWORD": "pg@su/per:user#1",
    "ORDERS_OWNER_PASSWORD": "own er%?",
    "ORDERS_WRITER_PASSWORD": "wr@it/er:#%? x",
    "ORDERS_READER_PASSWORD": "re@d/er:#%? y",
    "REDIS_PASSWORD": "re@dis/pw:#%? z",
    "GRAFANA_ADMIN_PASSWORD": "graf@na",
    "FLOWER_BASIC_AUTH": "admin:fl@wer",
}


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def services() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose()["services"]
    return found


def our_services() -> dict[str, dict[str, Any]]:
    """Services that run this project's image."""
    return {
        name: service
        for name, service in services().items()
        if service.get("image") == "celery-orders"
    }


INTERPOLATION = re.compile(r"\$\{(\w+)(?::?([-?])([^}]*))?\}")


def interpolated(value: str, env: dict[str, str]) -> str:
    """What compose makes of ``value``: ``${X}``, ``${X:-default}``, ``${X:?error}``;
    ``$$`` is a literal ``$``."""

    def substitute(match: re.Match[str]) -> str:
        name, kind, rest = match.groups()
        if env.get(name):
            return env[name]
        if kind == "?":
            raise AssertionError(f"{name} is required: {rest}")
        return rest or ""

    return INTERPOLATION.sub(substitute, value.replace("$$", "\0")).replace("\0", "$")


def environment(name: str, env: dict[str, str] = HOST_ENV) -> dict[str, str]:
    return {
        key: interpolated(str(value), env)
        for key, value in services()[name].get("environment", {}).items()
    }


def settings_of(name: str) -> Settings:
    return Settings.from_env(environment(name))


def test_the_services() -> None:
    assert set(services()) == SERVICES


def test_every_role_runs_our_image() -> None:
    assert set(our_services()) == OURS


@pytest.mark.parametrize("name", sorted(OURS))
def test_each_command_is_one_the_cli_accepts(name: str) -> None:
    name_and_args = our_services()[name]["command"]
    subcommand = cli.get_command(click.Context(cli), name_and_args[0])
    assert subcommand is not None, f"{name}: orders has no command {name_and_args[0]!r}"
    # Parses the arguments and options exactly as the CLI would, without running it.
    subcommand.make_context(name_and_args[0], list(name_and_args[1:]))


@pytest.mark.parametrize("name", sorted(OURS))
def test_each_variable_is_one_the_code_reads(name: str) -> None:
    read = {spec.metadata["env"] for spec in fields(Settings)} | set(PASSWORD_VARIABLES.values())
    assert set(our_services()[name]["environment"]) <= read


@pytest.mark.parametrize("name", sorted(OURS))
def test_each_service_reads_settings_it_accepts(name: str) -> None:
    settings = settings_of(name)

    assert settings.log_format == "json"
    # Each needs the broker but migrate; each the database but beat.
    assert settings.embedded == (name == "migrate")
    assert settings.database_url.startswith("postgresql") == (name != "beat")


def test_queues_of_the_workers_cover_both_queues() -> None:
    queues = set()
    for service in our_services().values():
        command = service["command"]
        if command[0] == "worker":
            queues.update(command[command.index("--queues") + 1].split(","))
    assert queues == {"orders.commands", "orders.projections"}


# -- secrets ----------------------------------------------------------------------------

SECRET_KEY = re.compile(r"PASSWORD|SECRET|TOKEN|_AUTH$")


def test_no_secret_is_written_in_the_file() -> None:
    for name, service in services().items():
        for key, value in service.get("environment", {}).items():
            if SECRET_KEY.search(key):
                assert str(value).startswith("${"), f"{name}: {key} is written in the file"
    # Nor in a URL: no user:password@ but one the shell fills in ($$...).
    text = INTERPOLATION.sub("user", COMPOSE.read_text())
    written = re.findall(r"://[^/\s:@'\"]*:([^@\s'\"$][^@\s'\"]*)@", text)
    assert not written


def test_no_password_has_a_default() -> None:
    """Required (``:?``), or empty (unset: ORDERS_OWNER_PASSWORD); never a known value."""
    for name, service in services().items():
        for key, value in service.get("environment", {}).items():
            if "PASSWORD" in key or key.endswith("_AUTH"):
                assert re.fullmatch(r"\$\{\w+(:\?[^}]*|:-)\}", str(value)), (name, key, value)


@pytest.mark.parametrize("name", sorted(OURS))
def test_no_url_carries_a_password_the_password_variables_do(name: str) -> None:
    """compose could only build such a URL by pasting the password in, unencoded."""
    for key, value in environment(name).items():
        if key.endswith(("_URL", "_BACKEND")):
            parsed = make_url(value) if value.startswith("postgresql") else None
            assert parsed is None or parsed.password is None, (name, key)
            assert not re.search(r"://[^/@]*:[^/@]*@", value), (name, key)


def test_only_migrate_connects_as_the_superuser() -> None:
    migrate = settings_of("migrate")
    url = make_url(migrate.database_url)

    assert (url.username, url.password) == ("postgres", HOST_ENV["POSTGRES_PASSWORD"])
    for name in OURS - {"migrate"}:
        assert "POSTGRES_PASSWORD" not in str(our_services()[name]["environment"]), name


def test_migrate_creates_the_roles_with_their_passwords() -> None:
    service = our_services()["migrate"]

    assert service["command"] == ["migrate", "--create-roles"]
    assert service["restart"] == "no"
    env = environment("migrate")
    assert env["ORDERS_WRITER_PASSWORD"] == HOST_ENV["ORDERS_WRITER_PASSWORD"]
    assert env["ORDERS_READER_PASSWORD"] == HOST_ENV["ORDERS_READER_PASSWORD"]
    assert env["ORDERS_OWNER_PASSWORD"] == HOST_ENV["ORDERS_OWNER_PASSWORD"]
    # The owner's is optional: with none, the owner gets no password.
    unset = {k: v for k, v in HOST_ENV.items() if k != "ORDERS_OWNER_PASSWORD"}
    assert environment("migrate", unset)["ORDERS_OWNER_PASSWORD"] == ""


@pytest.mark.parametrize("name", sorted(WORKERS))
def test_the_workers_connect_as_the_writer(name: str) -> None:
    settings = settings_of(name)
    url = make_url(settings.database_url)

    assert (url.username, url.password) == (WRITER, HOST_ENV["ORDERS_WRITER_PASSWORD"])
    assert url.host == "postgres"
    assert settings.read_database_url is None


def test_the_api_connects_as_the_reader_only() -> None:
    settings = settings_of("api")

    assert settings.read_database_url is not None
    for raw in (settings.database_url, settings.read_database_url):
        url = make_url(raw)
        assert (url.username, url.password) == (READER, HOST_ENV["ORDERS_READER_PASSWORD"])


def test_beat_holds_no_database_credentials() -> None:
    """It only sends messages (the sweep, the daily prune) for the workers to run."""
    env = our_services()["beat"]["environment"]

    assert not {key for key in env if "DATABASE" in key}
    assert "depends_on" in our_services()["beat"]
    assert "migrate" not in our_services()["beat"]["depends_on"]


@pytest.mark.parametrize("name", sorted(OURS - ONE_SHOT))
def test_each_long_running_service_reaches_redis_with_the_password(name: str) -> None:
    settings = settings_of(name)

    broker = redis_url(settings.broker_url)  # type: ignore[no-untyped-call]
    assert broker["password"] == HOST_ENV["REDIS_PASSWORD"]
    assert broker["host"] == "redis"
    backend = redis_url(settings.endpoints.outcome_backend)  # type: ignore[no-untyped-call]
    assert backend["password"] == HOST_ENV["REDIS_PASSWORD"]


# -- Redis ------------------------------------------------------------------------------


def redis_command() -> list[str]:
    """redis-server's arguments, as the redis service's shell hands them over."""
    command = services()["redis"]["command"]
    assert command[:2] == ["sh", "-c"]
    script = interpolated(command[2], {})
    start = "exec docker-entrypoint.sh redis-server "  # the image's entrypoint drops root
    assert script.startswith(start)
    printed = subprocess.run(
        ["sh", "-c", script.replace(start, "printf '%s\\0' ", 1)],
        env=environment("redis"),
        capture_output=True,
        text=True,
        check=True,
    )
    return printed.stdout.split("\0")[:-1]


def option(arguments: list[str], name: str) -> str:
    assert name in arguments, f"redis-server has no {name}"
    return arguments[arguments.index(name) + 1]


def test_redis_requires_the_password_the_services_are_given() -> None:
    arguments = redis_command()

    assert option(arguments, "--requirepass") == HOST_ENV["REDIS_PASSWORD"]
    for name in OURS - {"migrate"}:
        variable = our_services()[name]["environment"]["ORDERS_REDIS_PASSWORD"]
        assert variable == services()["redis"]["environment"]["REDIS_PASSWORD"]


def test_redis_evicts_only_what_expires() -> None:
    arguments = redis_command()

    assert option(arguments, "--maxmemory") == "256mb"
    # Outcomes expire (ORDERS_RESULT_EXPIRES); queued commands have no TTL: never evicted.
    assert option(arguments, "--maxmemory-policy") == "volatile-ttl"


def test_redis_keeps_what_it_queued() -> None:
    assert option(redis_command(), "--appendonly") == "yes"


def test_redis_healthcheck_authenticates_and_wants_a_pong() -> None:
    test = services()["redis"]["healthcheck"]["test"]

    assert test[0] == "CMD-SHELL"
    assert "REDISCLI_AUTH=" in test[1] and "$$REDIS_PASSWORD" in test[1]
    assert test[1].endswith("grep -q PONG")  # redis-cli exits 0 on NOAUTH too


# -- health and start-up order ----------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SERVICES - ONE_SHOT))
def test_each_long_running_service_has_a_healthcheck(name: str) -> None:
    check = services()[name].get("healthcheck", {})

    assert check.get("test"), f"{name} has no healthcheck"
    assert check["test"][0] in ("CMD", "CMD-SHELL")


@pytest.mark.parametrize("name", sorted(WORKERS))
def test_a_worker_healthcheck_pings_its_own_node(name: str) -> None:
    service = our_services()[name]
    command = service["command"]
    node = command[command.index("--hostname") + 1]
    test = service["healthcheck"]["test"]

    assert node.endswith("@%h")
    # celery expands %h to the host name, which the container's HOSTNAME holds.
    destination = node.replace("%h", "$$HOSTNAME")
    assert test[0] == "CMD-SHELL"
    assert f'-d "{destination}"' in test[1]
    assert test[1].startswith("celery -A workers.app inspect ping")


def test_the_api_healthcheck_asks_its_own_port() -> None:
    service = our_services()["api"]
    port = service["command"][service["command"].index("--port") + 1]

    assert f"http://127.0.0.1:{port}/api/health" in " ".join(service["healthcheck"]["test"])


def test_everything_waits_for_what_it_needs() -> None:
    every = services()
    for name, service in every.items():
        for needed, condition in service.get("depends_on", {}).items():
            assert needed in every, f"{name} depends on {needed}, which is not a service"
            if condition["condition"] == "service_healthy":
                assert "healthcheck" in every[needed], f"{needed} has no healthcheck"
            if needed in ONE_SHOT:
                assert condition["condition"] == "service_completed_successfully"
    assert every["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in OURS - {"migrate", "beat"}:
        assert every[name]["depends_on"]["migrate"]["condition"] == (
            "service_completed_successfully"
        )
    for name in OURS - {"migrate"}:
        assert every[name]["depends_on"]["redis"]["condition"] == "service_healthy"


def test_the_image_has_a_healthcheck_for_each_role() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()

    assert "HEALTHCHECK " in dockerfile
    for role in ("serve", "worker", "beat"):
        assert f'*" {role} "*)' in dockerfile


# -- metrics and logs -------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(WORKERS))
def test_the_workers_serve_metrics(name: str) -> None:
    assert settings_of(name).metrics_port == 9100


@pytest.mark.parametrize("name", sorted(OURS))
def test_every_service_of_ours_logs_json(name: str) -> None:
    assert our_services()[name]["environment"]["ORDERS_LOG_FORMAT"] == "json"


# -- files and ports --------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_every_mounted_file_is_in_the_repository(name: str) -> None:
    for volume in services()[name].get("volumes", []):
        source = volume.split(":")[0]
        if source.startswith("."):
            assert (ROOT / source).exists(), f"{name} mounts {source}, which is missing"
        else:
            assert source in compose()["volumes"], f"{name}: undeclared volume {source}"


def test_every_published_port_is_on_loopback_only() -> None:
    for name, service in services().items():
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond this host"
    assert services()["api"]["ports"] == ["127.0.0.1:8000:8000"]


def test_the_image_copies_every_package_it_installs_but_the_benchmark() -> None:
    installed = set(re.findall(r'"(\w+)\*"', (ROOT / "pyproject.toml").read_text()))
    copied = set(re.findall(r"^COPY (\w+) ", (ROOT / "Dockerfile").read_text(), re.M))
    assert installed - {"benchmarks"} == copied
