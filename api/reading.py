"""What every read answer carries: the data as JSON, how fresh the read models behind it
are (``X-Orders-Checkpoint``, ``X-Orders-Lag-Events``, ``X-Orders-Lag-Seconds``), and
for the lists and summaries an ``ETag``, so a dashboard polling with ``If-None-Match``
gets ``304`` while nothing changed."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from fastapi import Request, Response
from sqlalchemy import Connection

from bootstrap import Services
from readmodels.freshness import freshness, wait_until_applied
from readmodels.queries import to_json

STALE_HEADER = "X-Orders-Consistency"


def answer(
    request: Request,
    conn: Connection,
    services: Services,
    data: Any,
    read_models: Sequence[str],
    *,
    etag: bool = False,
    headers: dict[str, str] | None = None,
) -> Response:
    fresh = freshness(conn, services.reader, read_models)
    body = json.dumps(to_json(data), separators=(",", ":")).encode()
    extra = {
        "X-Orders-Checkpoint": f"{fresh.checkpoint.transaction_id}/{fresh.checkpoint.position}",
        "X-Orders-Lag-Events": str(fresh.lag_events),
        "X-Orders-Lag-Seconds": f"{fresh.lag_seconds:.3f}",
        **(headers or {}),
    }
    if etag:
        tag = f'W/"{hashlib.sha256(body).hexdigest()[:32]}"'
        extra["ETag"] = tag
        extra["Cache-Control"] = "no-cache"
        if tag in request.headers.get("if-none-match", ""):
            return Response(status_code=304, headers=extra)
    return Response(body, media_type="application/json", headers=extra)


def wait_for_command(
    services: Services, command_id: str | None, read_models: Sequence[str]
) -> dict[str, str]:
    """Wait (bounded by ``ORDERS_API_CONSISTENCY_WAIT``) until ``read_models`` show
    ``command_id``'s events; the header that says whether they do."""
    if command_id is None:
        return {}
    applied = wait_until_applied(
        services.read_engine.connect,
        services.reader,
        read_models,
        services.store.find_outcome,
        command_id,
        services.settings.api_consistency_wait,
    )
    return {STALE_HEADER: "fresh" if applied else "stale"}
