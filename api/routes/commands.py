"""The command door for producers that cannot speak Celery: the same envelope as on the
broker (docs/wire-protocol.md), sent on exactly as ``CommandClient`` sends it."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from api.deps import command_client, services
from api.errors import ApiError
from bootstrap import Services
from commands import Outcome
from commands.client import BrokerUnavailable, CommandClient
from commands.envelope import MAX_ENVELOPE_BYTES, InvalidEnvelope, decode
from commands.fields import command_id as check_command_id

router = APIRouter(prefix="/api/commands", tags=["commands"])

ENVELOPE_EXAMPLE = {
    "type": "AddItem",
    "schema": 1,
    "command_id": "0b6a9a2e-56cf-4d0a-9b57-1c1f2c7d1a02",
    "payload": {"order_id": "order-001", "item_id": "apple", "quantity": 3, "price": "1.50"},
}


@router.post(
    "",
    status_code=202,
    summary="Send a command",
    response_description="Queued: its outcome will be at the Location",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"example": ENVELOPE_EXAMPLE}},
            "description": "The command's envelope (commands/schema/command.schema.json).",
        }
    },
    responses={
        400: {"description": "Not a valid command: the error names the field"},
        413: {"description": "Larger than 64 KiB"},
        503: {"description": "The broker did not take it: send it again, same command id"},
    },
)
async def send(
    request: Request,
    client: Annotated[CommandClient, Depends(command_client)],
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> JSONResponse:
    """Validate the envelope as a worker would, then enqueue it. Sending the same
    command again (same ``command_id``) is always safe; an ``Idempotency-Key`` header,
    if given, must be that command id."""
    raw = await request.body()
    if len(raw) > MAX_ENVELOPE_BYTES:
        raise ApiError(413, "TooLarge", f"the body is {len(raw)} bytes, above {MAX_ENVELOPE_BYTES}")
    try:
        envelope: Any = json.loads(raw)
    except ValueError as error:
        raise ApiError(400, "InvalidJson", f"the body is not JSON: {error}") from None
    try:
        command = decode(envelope)
    except InvalidEnvelope as invalid:
        raise ApiError(400, "InvalidCommand", f"{invalid.field}: {invalid.reason}") from None
    if idempotency_key is not None and _canonical(idempotency_key) != command.command_id:
        raise ApiError(
            400,
            "IdempotencyKeyMismatch",
            f"the Idempotency-Key header must be the envelope's command_id, {command.command_id}",
        )
    try:
        # The client blocks (bounded by ORDERS_PUBLISH_TIMEOUT): not on the event loop.
        await run_in_threadpool(client.send, command)
    except BrokerUnavailable as down:
        raise ApiError(503, "BrokerUnavailable", str(down), {"Retry-After": "1"}) from None
    location = f"/api/commands/{command.command_id}"
    return JSONResponse(
        {"command_id": command.command_id, "status": "queued", "outcome": location},
        status_code=202,
        headers={"Location": location},
    )


@router.get(
    "/{command_id}",
    summary="What became of a command",
    responses={404: {"description": "No outcome yet (or an unknown id)"}},
)
def outcome(
    command_id: str,
    client: Annotated[CommandClient, Depends(command_client)],
    system: Annotated[Services, Depends(services)],
) -> dict[str, Any]:
    """The command's outcome (docs/wire-protocol.md), by command id or task id: from the
    result store, or from the command log once the result store has let it go."""
    found: Outcome | None = client.outcome(command_id) or system.store.find_outcome(command_id)
    if found is None:
        raise ApiError(404, "NoOutcome", f"no outcome for {command_id} (yet)", {"Retry-After": "1"})
    return found.to_dict()


def _canonical(key: str) -> str:
    try:
        return check_command_id("Idempotency-Key", key)
    except ValueError:
        return key
