"""Orders, as the dashboards read them: a page of the newest, and one with its lines and,
on request, its history."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from sqlalchemy import Connection

from api.deps import answers
from api.errors import ApiError
from api.reading import Answers
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
async def list_orders(
    request: Request,
    read: Annotated[Answers, Depends(answers)],
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
    consistency = await read.wait_for(after_command, SUMMARY)

    def page(conn: Connection) -> dict[str, Any]:
        try:
            found = queries.list_orders(
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
        return {"orders": found.rows, "next": found.next_cursor}

    return await read.respond(
        request, SUMMARY, page, etag=True, headers=consistency, fresh=bool(consistency)
    )


@router.get(
    "/{order_id}",
    summary="One order with its lines (and its history)",
    responses={404: {"description": "No such order in the read models"}},
)
async def show_order(
    order_id: str,
    request: Request,
    read: Annotated[Answers, Depends(answers)],
    history: Annotated[bool, Query(description="Add its events and commands' outcomes")] = False,
    after_command: After = None,
) -> Response:
    consistency = await read.wait_for(after_command, WITH_LINES)

    def order(conn: Connection) -> dict[str, Any]:
        found = queries.show_order(conn, order_id)
        if found is None:
            raise ApiError(404, "UnknownOrder", f"no order {order_id} in the read models")
        if history:
            found.update(queries.order_history(conn, order_id))
        return found

    return await read.respond(
        request, WITH_LINES, order, etag=True, headers=consistency, fresh=bool(consistency)
    )
