"""The dashboards' figures: customers, products, revenue per day, and the read models'
own state."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from sqlalchemy import Connection

from api.deps import read_connection, services
from api.reading import answer
from bootstrap import Services
from readmodels import queries
from readmodels.maintenance import status
from readmodels.projections import PROJECTIONS

router = APIRouter(prefix="/api", tags=["figures"])

Top = Annotated[int, Query(ge=1, le=queries.MAX_LIMIT)]


@router.get("/customers", summary="Customers by the value of their paid orders")
def customers(
    request: Request,
    conn: Annotated[Connection, Depends(read_connection)],
    system: Annotated[Services, Depends(services)],
    top: Top = 10,
) -> Response:
    rows = queries.top_customers(conn, top)
    return answer(request, conn, system, {"customers": rows}, ("customer_stats",))


@router.get("/products/top", summary="Items of paid orders by revenue or units")
def products(
    request: Request,
    conn: Annotated[Connection, Depends(read_connection)],
    system: Annotated[Services, Depends(services)],
    by: Literal["revenue", "units"] = "revenue",
    limit: Top = 10,
) -> Response:
    rows = queries.top_products(conn, limit, by=by)
    return answer(request, conn, system, {"products": rows, "by": by}, ("product_sales",))


@router.get("/revenue/daily", summary="Paid revenue per UTC day, oldest first")
def revenue(
    request: Request,
    conn: Annotated[Connection, Depends(read_connection)],
    system: Annotated[Services, Depends(services)],
    days: Annotated[int, Query(ge=1, le=3660)] = 30,
) -> Response:
    rows = queries.revenue(conn, days)
    return answer(request, conn, system, {"days": rows}, ("revenue_daily",))


@router.get("/projections", summary="Each read model: checkpoint, head, lag, stuck, parked")
def projections(
    request: Request,
    conn: Annotated[Connection, Depends(read_connection)],
    system: Annotated[Services, Depends(services)],
) -> Response:
    report = [
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
        for entry in status(system.read_engine, system.reader, PROJECTIONS.values())
    ]
    return answer(request, conn, system, {"projections": report}, tuple(PROJECTIONS))
