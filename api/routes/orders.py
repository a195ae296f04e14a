"""Orders, as the dashboards read them: a page of the newest, and one with its lines and,
on request, its history."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from sqlalchemy import Connection

from api.deps import read_connection, services
from api.errors import ApiError
from api.reading import answer, wait_for_command
from bootstrap import Services
from readmodels import queries

router = APIRouter(prefix="/api/orders", tags=["orders"])

SUMMARY = ("order_summary",)
WITH_LINES = ("order_summary", "order_lines")
After = Annotated[
    str | None,
    Query(
        max_length=64,
        description="A command id: answer once the read models show its events "
        "(at most ORDERS_API_CONSISTENCY_WAIT seconds; X-Orders-Consistency says which).",
    ),
]


@router.get("", summary="Orders, newest first, a page at a time")
def list_orders(
    request: Request,
    conn: Annotated[Connection, Depends(read_connection)],
    system: Annotated[Services, Depends(services)],
    status: Literal["created", "paid", "cancelled"] | None = None,
    customer: Annotated[str | None, Query(max_length=128)] = None,
    since: Annotated[datetime | None, Query(description="Created at or after (ISO 8601)")] = None,
    until: Annotated[datetime | None, Query(description="Created before (ISO 8601)")] = None,
    limit: Annotated[int, Query(ge=1, le=queries.MAX_LIMIT)] = 50,
    cursor: Annotated[str | None, Query(max_length=512, description="`next` of a page")] = None,
    after_command: After = None,
) -> Response:
    """Keyset pages (never OFFSET): a page costs the same however deep it is. The body's
    ``next`` is the cursor of the page after, or null on the last one."""
    consistency = wait_for_command(system, after_command, SUMMARY)
    try:
        page = queries.list_orders(
            conn,
            status=status,
            customer_id=customer,
            since=since,
            until=until,
            limit=limit,
            after=cursor,
        )
    except queries.BadCursor as bad:
        raise ApiError(400, "BadParameter", f"cursor: {bad}") from None
    body = {"orders": page.rows, "next": page.next_cursor}
    return answer(request, conn, system, body, SUMMARY, etag=True, headers=consistency)


@router.get(
    "/{order_id}",
    summary="One order with its lines (and its history)",
    responses={404: {"description": "No such order in the read models"}},
)
def show_order(
    order_id: str,
    request: Request,
    conn: Annotated[Connection, Depends(read_connection)],
    system: Annotated[Services, Depends(services)],
    history: Annotated[bool, Query(description="Add its events and commands' outcomes")] = False,
    after_command: After = None,
) -> Response:
    consistency = wait_for_command(system, after_command, WITH_LINES)
    order = queries.show_order(conn, order_id)
    if order is None:
        raise ApiError(404, "UnknownOrder", f"no order {order_id} in the read models")
    if history:
        order.update(queries.order_history(conn, order_id))
    return answer(request, conn, system, order, WITH_LINES, etag=True, headers=consistency)
