"""Errors a producer can get before a command ever leaves its process."""

from __future__ import annotations


class InvalidCommand(ValueError):
    """A command field failed validation; ``field`` names it, ``reason`` says why."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason
