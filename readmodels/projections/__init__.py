"""Every projection, by name. A new one is a module here, its table, and a line below."""

from __future__ import annotations

from readmodels.projections import (
    customer_stats,
    order_lines,
    order_summary,
    product_sales,
    revenue_daily,
)
from readmodels.projections.base import Projection

PROJECTIONS: dict[str, Projection] = {
    module.PROJECTION.name: module.PROJECTION
    for module in (order_summary, order_lines, customer_stats, product_sales, revenue_daily)
}
