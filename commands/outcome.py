"""What became of a command: the answer every producer gets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Status = Literal["accepted", "rejected", "failed"]
STATUSES: tuple[Status, ...] = ("accepted", "rejected", "failed")


@dataclass(frozen=True)
class Outcome:
    """The terminal result of one command.

    ``accepted``: its events were appended, ``version`` is the order's version after them.
    ``rejected``: the order's rules or the command's fields refused it; nothing was written.
    ``failed``: the system could not decide (conflicts or outages past their retry limit);
    nothing was written and the producer may send a new command.
    """

    status: Status
    command_id: str
    order_id: str | None = None
    version: int | None = None
    events: tuple[str, ...] = ()
    error: str | None = None
    message: str | None = None

    @property
    def accepted(self) -> bool:
        return self.status == "accepted"

    def to_dict(self) -> dict[str, Any]:
        # Spelled out: dataclasses.asdict deep-copies, and this runs for every command.
        return {
            "status": self.status,
            "command_id": self.command_id,
            "order_id": self.order_id,
            "version": self.version,
            "events": list(self.events),
            "error": self.error,
            "message": self.message,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Outcome:
        status = data["status"]
        if status not in STATUSES:
            raise ValueError(f"unknown outcome status {status!r}")
        return cls(
            status=status,
            command_id=str(data["command_id"]),
            order_id=data.get("order_id"),
            version=data.get("version"),
            events=tuple(data.get("events") or ()),
            error=data.get("error"),
            message=data.get("message"),
        )
