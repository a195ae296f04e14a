"""Messages that are not valid commands: rejected with a reason, recorded, never retried.

With a readable command id the rejection goes to the command log, where the producer's
``orders status`` and outcome lookups find it; without one, the raw body goes to the
dead-letter table.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from bootstrap import Services
from commands import Outcome
from commands.envelope import InvalidEnvelope, digest, plain
from commands.fields import identifier

log = logging.getLogger(__name__)


def reject_invalid(
    services: Services, envelope: Any, error: InvalidEnvelope, task_id: str | None
) -> Outcome:
    reason = str(error)
    if error.command_id is None:
        services.dead_letters.record("orders.commands", f"InvalidCommand: {reason}", _raw(envelope))
        log.warning("dead-lettered a message without a readable command id: %s", reason)
        return Outcome(
            status="rejected", command_id=task_id or "", error="InvalidCommand", message=reason
        )
    outcome = Outcome(
        status="rejected",
        command_id=error.command_id,
        order_id=_readable_order_id(envelope),
        error="InvalidCommand",
        message=reason,
    )
    log.warning("rejected invalid command %s: %s", error.command_id, reason)
    # The envelope's digest stands for the command's fingerprint: a valid command sent
    # later under this id is another command, and is refused as one.
    return services.store.record_outcome(readable_type(envelope), outcome, digest(envelope))


def reject_wrong_arguments(
    services: Services, args: tuple[Any, ...], kwargs: dict[str, Any], task_id: str | None
) -> Outcome:
    reason = (
        "a command message carries exactly one envelope, "
        f"got {len(args)} argument(s) and {len(kwargs)} keyword(s)"
    )
    raw = _raw({"args": list(args), "kwargs": kwargs})
    services.dead_letters.record("orders.commands", f"InvalidCommand: {reason}", raw)
    log.warning("dead-lettered task %s: %s", task_id, reason)
    return Outcome(
        status="rejected", command_id=task_id or "", error="InvalidCommand", message=reason
    )


def reject_unrunnable(
    services: Services, args: Any, kwargs: Any, task_id: str | None, error: BaseException | None
) -> Outcome:
    reason = f"the task could not run: {error}"
    raw = _raw({"args": args, "kwargs": kwargs})
    services.dead_letters.record("orders.commands", f"InvalidCommand: {reason}", raw)
    log.warning("dead-lettered task %s: %s", task_id, reason)
    return Outcome(
        status="rejected", command_id=task_id or "", error="InvalidCommand", message=reason
    )


def _raw(envelope: Any) -> str:
    try:
        return json.dumps(plain(envelope))
    except (TypeError, ValueError):
        return repr(envelope)


def readable_type(envelope: Any) -> str:
    kind = envelope.get("type") if isinstance(envelope, dict) else None
    return kind if isinstance(kind, str) and kind.isidentifier() and len(kind) <= 64 else "unknown"


def _readable_order_id(envelope: Any) -> str | None:
    payload = envelope.get("payload") if isinstance(envelope, dict) else None
    order_id = payload.get("order_id") if isinstance(payload, dict) else None
    try:
        return identifier("order_id", order_id)
    except ValueError:
        return None
