"""``decode_jsonb``: the engine's JSON decoder, faster than ``json.loads`` on what
PostgreSQL prints, and the same as it on everything else."""

from __future__ import annotations

import json

import pytest

from store.postgres.backend import decode_jsonb

DOCUMENTS = [
    '{"item_id": "i2", "quantity": 1, "price": "1.00"}',
    '{"nested": {"list": [1, 2.5, -3e2, true, false, null]}, "text": "caf\\u00e9 \\"q\\""}',
    "[]",
    '"just a string"',
    "42",
    "null",
]


@pytest.mark.parametrize("text", DOCUMENTS)
def test_decodes_what_postgres_prints_as_json_loads_does(text: str) -> None:
    assert decode_jsonb(text) == json.loads(text)


@pytest.mark.parametrize("text", ['  {"a": 1}', '{"a": 1}  ', "\n[1, 2]\n"])
def test_text_with_spaces_around_it_takes_the_general_path(text: str) -> None:
    assert decode_jsonb(text) == json.loads(text)


@pytest.mark.parametrize("text", ['{"a": 1} {"b": 2}', '{"a": ', "", "nope"])
def test_anything_json_loads_refuses_is_refused(text: str) -> None:
    with pytest.raises(json.JSONDecodeError):
        decode_jsonb(text)
