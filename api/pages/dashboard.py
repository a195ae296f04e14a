"""``/``: the overview (figures, orders by status, revenue per day, top products and
customers, the newest orders, each read model's freshness); ``/orders/{id}``: one order
with its lines and the timeline of its events and commands.

The live part of ``/`` is also served alone (``/live``, with an ``ETag``); a few lines
of JavaScript poll it with ``If-None-Match`` and swap it in when it changed, so new
orders appear without a reload, and without JavaScript the page is simply a page.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from sqlalchemy import Connection

from api.deps import answers, read_connection, services
from api.errors import ApiError
from api.pages.charts import revenue_bars
from api.reading import Answers
from bootstrap import Services
from readmodels import queries
from readmodels.maintenance import status as projection_status
from readmodels.projections import PROJECTIONS

TEMPLATES = Jinja2Templates(directory=Path(__file__).resolve().parents[1] / "templates")
router = APIRouter(include_in_schema=False)

Status = Literal["created", "paid", "cancelled"] | None
Customer = Annotated[str | None, Query(max_length=128)]
Cursor = Annotated[str | None, Query(max_length=512)]


def _live(
    conn: Connection, system: Services, status: Status, customer: str | None, cursor: str | None
) -> dict[str, Any]:
    now = datetime.now(UTC)
    try:
        page = queries.list_orders(
            conn, status=status, customer_id=customer or None, limit=20, after=cursor
        )
    except queries.BadCursor as bad:
        raise ApiError(400, "BadParameter", f"cursor: {bad}") from None
    freshness = projection_status(system.read_engine, system.reader, PROJECTIONS.values())
    return {
        "now": now,
        "overview": queries.overview(conn, now),
        "chart": revenue_bars(queries.revenue(conn, 30, now.date()), now.date()),
        "products": queries.top_products(conn, 5),
        "customers": queries.top_customers(conn, 5),
        "page": page,
        "freshness": freshness,
        "filters": {"status": status or "", "customer": customer or ""},
    }


@router.get("/", response_class=HTMLResponse)
def index(
    request: Request,
    conn: Annotated[Connection, Depends(read_connection)],
    system: Annotated[Services, Depends(services)],
    status: Status = None,
    customer: Customer = None,
    cursor: Cursor = None,
) -> Response:
    context = _live(conn, system, status, customer, cursor)
    return TEMPLATES.TemplateResponse(request, "index.html", context)


@router.get("/live", response_class=HTMLResponse)
async def live(
    request: Request,
    read: Annotated[Answers, Depends(answers)],
    system: Annotated[Services, Depends(services)],
    status: Status = None,
    customer: Customer = None,
    cursor: Cursor = None,
) -> Response:
    """The live part of ``/``, for the page's script to poll: rendered again only when a
    read model moved, so a dashboard left open costs next to nothing."""
    states = await read.states()

    def render() -> bytes:
        with system.read_engine.connect() as conn:
            context = _live(conn, system, status, customer, cursor)
        context.pop("now")  # the clock alone must not make every poll a change
        return TEMPLATES.get_template("live.html").render(request=request, **context).encode()

    html, tag = await read.kept(request, list(states.values()), render, shows_lag=True)
    headers = {"ETag": tag, "Cache-Control": "no-cache"}
    if tag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    return HTMLResponse(html, headers=headers)


@router.get("/orders/{order_id}", response_class=HTMLResponse)
def order_page(
    order_id: str,
    request: Request,
    conn: Annotated[Connection, Depends(read_connection)],
) -> Response:
    order = queries.show_order(conn, order_id)
    if order is None:
        missing = {"order_id": order_id}
        return TEMPLATES.TemplateResponse(request, "missing.html", missing, status_code=404)
    context = {"order": order, "timeline": timeline(conn, order_id)}
    return TEMPLATES.TemplateResponse(request, "order.html", context)


def timeline(conn: Connection, order_id: str) -> list[dict[str, Any]]:
    """The order's commands in the order they were decided, each with the events it
    appended; events no recorded command explains stand on their own, at their time."""
    history = queries.order_history(conn, order_id)
    caused: dict[str, list[dict[str, Any]]] = {}
    for event in history["events"]:
        caused.setdefault(event["command_id"] or "", []).append(event)
    entries = [
        {**command, "at": command["recorded_at"], "events": caused.pop(command["command_id"], [])}
        for command in history["commands"]
    ]
    for orphans in caused.values():
        entries += [
            {"command_type": None, "at": event["recorded_at"], "events": [event]}
            for event in orphans
        ]
    return sorted(entries, key=lambda entry: entry["at"])
