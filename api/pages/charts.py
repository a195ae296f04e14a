"""Charts as inline SVG, drawn on the server: no library, no build step, no CDN."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import Any


@dataclass(frozen=True)
class Bar:
    label: str
    value: Decimal
    x: float
    y: float
    width: float
    height: float


@dataclass(frozen=True)
class BarChart:
    width: int
    height: int
    bars: list[Bar]
    top: Decimal


def revenue_bars(
    days: list[dict[str, Any]], today: date, count: int = 30, width: int = 600, height: int = 160
) -> BarChart:
    """One bar per UTC day for the last ``count`` days, zero where nothing was paid; the
    tallest bar fills the chart."""
    by_day = {row["day"]: Decimal(row["revenue"]) for row in days}
    first = today - timedelta(days=count - 1)
    values = [(first + timedelta(days=n), by_day.get(first + timedelta(days=n), Decimal(0)))
              for n in range(count)]  # fmt: skip
    top = max((value for _, value in values), default=Decimal(0))
    slot = width / count
    bars = []
    for index, (day, value) in enumerate(values):
        tall = float(value / top) * (height - 20) if top else 0.0
        bars.append(
            Bar(day.isoformat(), value, index * slot + 1, height - tall, max(slot - 2, 1), tall)
        )
    return BarChart(width, height, bars, top)
