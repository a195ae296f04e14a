"""docker-compose.yml, checked without a Docker engine: every command our image runs is
one the CLI accepts, and every variable set on our services is one the code reads."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from bootstrap import Settings
from cli.main import cli

COMPOSE = Path(__file__).resolve().parents[2] / "docker-compose.yml"


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def our_services() -> dict[str, dict[str, Any]]:
    """Services that run this project's image (the others are postgres, redis, flower)."""
    return {
        name: service
        for name, service in compose()["services"].items()
        if service.get("image") == "celery-orders"
    }


def test_every_role_runs_our_image() -> None:
    assert set(our_services()) == {
        "migrate",
        "command-worker",
        "projection-worker",
        "beat",
        "api",
    }


@pytest.mark.parametrize("name", sorted(our_services()))
def test_each_command_is_one_the_cli_accepts(name: str) -> None:
    name_and_args = our_services()[name]["command"]
    subcommand = cli.get_command(click.Context(cli), name_and_args[0])
    assert subcommand is not None, f"{name}: orders has no command {name_and_args[0]!r}"
    # Parses the arguments and options exactly as the CLI would, without running it.
    subcommand.make_context(name_and_args[0], list(name_and_args[1:]))


@pytest.mark.parametrize("name", sorted(our_services()))
def test_each_variable_is_one_the_code_reads(name: str) -> None:
    read = {spec.metadata["env"] for spec in fields(Settings)}
    assert set(our_services()[name]["environment"]) <= read


def test_queues_of_the_workers_cover_both_queues() -> None:
    queues = set()
    for service in our_services().values():
        command = service["command"]
        if command[0] == "worker":
            queues.update(command[command.index("--queues") + 1].split(","))
    assert queues == {"orders.commands", "orders.projections"}


def test_no_secret_is_written_in_the_file() -> None:
    text = COMPOSE.read_text()
    written = re.findall(r"^\s*(\w*(?:PASSWORD|AUTH|SECRET)\w*):\s*(?!\$\{)\S", text, re.M)
    assert not written, f"secrets written in the file: {written}"
    assert ":${POSTGRES_PASSWORD" in text


def test_redis_keeps_what_it_queued() -> None:
    assert "--appendonly" in compose()["services"]["redis"]["command"]


def test_the_image_copies_every_package_it_installs_but_the_benchmark() -> None:
    root = COMPOSE.parent
    installed = set(re.findall(r'"(\w+)\*"', (root / "pyproject.toml").read_text()))
    copied = set(re.findall(r"^COPY (\w+) ", (root / "Dockerfile").read_text(), re.M))
    assert installed - {"benchmarks"} == copied


def test_the_api_is_published_on_loopback_only() -> None:
    assert compose()["services"]["api"]["ports"] == ["127.0.0.1:8000:8000"]
