"""The figures each scenario measured, printed at the end of the run (and so kept in
``tests/scale/LAST_RUN.txt`` by ``make scale``)."""

from __future__ import annotations

import json
from typing import Any

FIGURES: list[tuple[str, dict[str, Any]]] = []


def record(title: str, figures: dict[str, Any]) -> None:
    FIGURES.append((title, figures))
    print(f"\n{title}: {json.dumps(figures, sort_keys=True)}")


def summary_lines() -> list[str]:
    return [f"{title}: {json.dumps(figures, sort_keys=True)}" for title, figures in FIGURES]
