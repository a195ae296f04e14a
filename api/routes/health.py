"""Liveness and readiness, for orchestrators and load balancers. Open even when
``ORDERS_API_TOKEN`` is set: they say whether the server can serve, not what it holds.
Without the token, readiness says each check's state but not its detail, which names
the database's and the broker's hosts and users."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from api.deps import holds_token, services
from bootstrap import Services
from bootstrap.health import check

router = APIRouter(prefix="/api", tags=["health"])


@router.get("/health", summary="Liveness: the process answers")
async def health() -> dict[str, Any]:
    return {"status": "alive"}


@router.get(
    "/ready",
    summary="Readiness: the database (at the newest migration) and the broker answer",
    responses={503: {"description": "Not ready: a check is down"}},
)
async def ready(request: Request, system: Annotated[Services, Depends(services)]) -> JSONResponse:
    """The checks of ``orders health``, but the read models' lag: a lagging projection
    makes the system degraded, not this server unable to answer."""
    report = await run_in_threadpool(check, system, projections=False)
    body = report.to_dict(details=await holds_token(request))
    return JSONResponse(body, status_code=503 if report.state == "down" else 200)
