"""Prometheus for the API: request counts and latency per route, and ``/metrics``,
which also reads the read models' lag at each scrape (``bootstrap.metrics``).

``/metrics`` is open like the health endpoints: it holds counts and lag, no order
data. Routes are labelled by their template (``/api/orders/{order_id}``), never by the
path asked for, so a label cannot take a value per order.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bootstrap.metrics import NoMetrics

router = APIRouter(tags=["metrics"])


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
    from starlette.concurrency import run_in_threadpool

    # The lag gauges query the database: off the event loop.
    text = await run_in_threadpool(generate_latest, request.app.state.registry)
    return Response(text, media_type=CONTENT_TYPE_LATEST)


class RequestMetrics:
    """Pure ASGI: counts each HTTP request by route, method and status, and times it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            observed: NoMetrics = getattr(scope["app"].state, "metrics", NoMetrics())
            route: Any = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            observed.request(template, scope["method"], status, time.perf_counter() - started)
