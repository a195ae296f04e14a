"""The wire contract as JSON Schemas: ``command.schema.json`` (the envelope a producer
sends) and ``outcome.schema.json`` (what it gets back). docs/wire-protocol.md explains
them; a test holds them against the worker's own validation."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any


@cache
def load(name: str) -> dict[str, Any]:
    """``load("command")`` or ``load("outcome")``: the schema as a dict."""
    text = resources.files(__package__).joinpath(f"{name}.schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema
