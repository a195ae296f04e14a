"""The dashboards' figures: customers, products, revenue per day, and the read models'
own state."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from sqlalchemy import Connection

from api.deps import answers, services
from api.reading import Answers
from bootstrap import Services
from readmodels import queries
from readmodels.maintenance import status
from readmodels.projections import PROJECTIONS

router = APIRouter(prefix="/api", tags=["figures"])

Top = Annotated[int, Query(ge=1, le=queries.MAX_LIMIT)]


@router.get("/customers", summary="Customers by the value of their paid orders")
async def customers(
    request: Request, read: Annotated[Answers, Depends(answers)], top: Top = 10
) -> Response:
    def rows(conn: Connection) -> dict[str, Any]:
        return {"customers": queries.top_customers(conn, top)}

    return await read.respond(request, ("customer_stats",), rows)


@router.get("/products/top", summary="Items of paid orders by revenue or units")
async def products(
    request: Request,
    read: Annotated[Answers, Depends(answers)],
    by: Literal["revenue", "units"] = "revenue",
    limit: Top = 10,
) -> Response:
    def rows(conn: Connection) -> dict[str, Any]:
        return {"products": queries.top_products(conn, limit, by=by), "by": by}

    return await read.respond(request, ("product_sales",), rows)


@router.get("/revenue/daily", summary="Paid revenue per UTC day, oldest first")
async def revenue(
    request: Request,
    read: Annotated[Answers, Depends(answers)],
    days: Annotated[int, Query(ge=1, le=3660)] = 30,
) -> Response:
    def rows(conn: Connection) -> dict[str, Any]:
        return {"days": queries.revenue(conn, days)}

    return await read.respond(request, ("revenue_daily",), rows)


@router.get("/projections", summary="Each read model: checkpoint, head, lag, stuck, parked")
async def projections(
    request: Request,
    read: Annotated[Answers, Depends(answers)],
    system: Annotated[Services, Depends(services)],
) -> Response:
    def report(_conn: Connection) -> dict[str, Any]:
        entries = status(system.read_engine, system.reader, PROJECTIONS.values())
        return {
            "projections": [
                {
                    "projection": entry.name,
                    "checkpoint": f"{entry.checkpoint.transaction_id}/{entry.checkpoint.position}",
                    "head": f"{entry.head.transaction_id}/{entry.head.position}",
                    "lag_events": entry.lag_events,
                    "lag_seconds": round(entry.lag_seconds, 3),
                    "stuck": entry.stuck,
                    "parked": entry.parked,
                    "error": entry.error,
                }
                for entry in entries
            ]
        }

    return await read.respond(request, tuple(PROJECTIONS), report, fresh=True, keep=False)
