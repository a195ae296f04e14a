"""Dashboard queries and projection operations on the command line."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import click

from bootstrap import order_history
from cli.common import open_services
from readmodels import queries
from readmodels.freshness import replica_lag
from readmodels.maintenance import RebuildFailed, rebuild, status, verify
from readmodels.projections import PROJECTIONS
from store.log import Checkpoint

_json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
_STATUSES = click.Choice(["created", "paid", "cancelled"])


def _emit(data: Any, as_json: bool, columns: Sequence[str] = ()) -> None:
    if as_json:
        click.echo(json.dumps(queries.to_json(data), indent=2))
        return
    rows = data if isinstance(data, list) else [data]
    if not rows:
        click.echo("(nothing)")
        return
    columns = list(columns or rows[0].keys())
    widths = {c: max(len(c), *(len(_cell(row.get(c))) for row in rows)) for c in columns}
    click.echo("  ".join(c.ljust(widths[c]) for c in columns))
    for row in rows:
        click.echo("  ".join(_cell(row.get(c)).ljust(widths[c]) for c in columns))


def _cell(value: Any) -> str:
    plain = queries.to_json(value)
    return "" if plain is None else str(plain)


@click.command()
@click.argument("order_id")
@_json_option
def show(order_id: str, as_json: bool) -> None:
    """Show ORDER_ID from the read model, with its lines."""
    with open_services() as services, services.read_engine.connect() as conn:
        order = queries.show_order(conn, order_id)
    if order is None:
        raise click.ClickException(f"order {order_id} is not in the read model")
    if as_json:
        _emit(order, True)
        return
    lines = order.pop("lines")
    for key, value in order.items():
        click.echo(f"{key:<15} {_cell(value)}")
    click.echo("")
    _emit(lines, False, ("item_id", "quantity", "unit_price"))


@click.command("list")
@click.option("--status", type=_STATUSES, default=None)
@click.option("--customer", default=None, help="Only this customer's orders.")
@click.option("--limit", type=click.IntRange(1, queries.MAX_LIMIT), default=20, show_default=True)
@click.option("--after", default=None, help="The cursor a previous page printed.")
@_json_option
def list_orders(
    status: str | None, customer: str | None, limit: int, after: str | None, as_json: bool
) -> None:
    """List orders, newest first, a page at a time."""
    with open_services() as services, services.read_engine.connect() as conn:
        try:
            page = queries.list_orders(
                conn, status=status, customer_id=customer, limit=limit, after=after
            )
        except queries.BadCursor as bad:
            raise click.BadParameter(str(bad), param_hint="--after") from None
    if as_json:
        _emit({"orders": page.rows, "next_cursor": page.next_cursor}, True)
        return
    columns = ("order_id", "customer_id", "status", "item_count", "units", "total", "created_at")
    _emit(page.rows, False, columns)
    if page.next_cursor:
        click.echo(f"next page: --after {page.next_cursor}")


@click.command("top-products")
@click.option("--limit", type=click.IntRange(1, queries.MAX_LIMIT), default=10, show_default=True)
@click.option("--by", type=click.Choice(sorted(queries.PRODUCT_ORDERS)), default="revenue")
@_json_option
def top_products(limit: int, by: str, as_json: bool) -> None:
    """Items of paid orders, by revenue or by units sold."""
    with open_services() as services, services.read_engine.connect() as conn:
        _emit(queries.top_products(conn, limit, by=by), as_json)


@click.command()
@click.option("--days", type=click.IntRange(1, 3660), default=30, show_default=True)
@_json_option
def revenue(days: int, as_json: bool) -> None:
    """Paid revenue per UTC day."""
    with open_services() as services, services.read_engine.connect() as conn:
        _emit(queries.revenue(conn, days), as_json)


@click.command()
@click.option("--top", type=click.IntRange(1, queries.MAX_LIMIT), default=10, show_default=True)
@_json_option
def customers(top: int, as_json: bool) -> None:
    """Customers by the value of their paid orders."""
    with open_services() as services, services.read_engine.connect() as conn:
        _emit(queries.top_customers(conn, top), as_json)


@click.group()
def projections() -> None:
    """Operate the read models: status, rebuild, verify, retry."""


@projections.command("status")
@_json_option
def projections_status(as_json: bool) -> None:
    """Each projection's checkpoint, the log head, and the lag in events and seconds."""
    with open_services() as services:
        report = status(services.engine, services.reader, PROJECTIONS.values())
        replica = None
        if services.read_engine is not services.engine:
            with services.read_engine.connect() as conn:
                replica = replica_lag(conn)
    rows = [
        {
            "projection": entry.name,
            "state": "STUCK" if entry.stuck else "ok",
            "checkpoint": f"{entry.checkpoint.transaction_id}/{entry.checkpoint.position}",
            "head": f"{entry.head.transaction_id}/{entry.head.position}",
            "lag_events": entry.lag_events,
            "lag_seconds": round(entry.lag_seconds, 3),
            "parked": entry.parked,
            "error": entry.error,
        }
        for entry in report
    ]
    if replica is not None:
        # The reads (ORDERS_READ_DATABASE_URL) come from a replica: they see each read
        # model this much later again.
        for row in rows:
            row["replica_lag_seconds"] = round(replica.seconds, 3)
            row["replica_lag_bytes"] = replica.bytes
    _emit(rows, as_json)


@projections.command("rebuild")
@click.argument("name", required=False, type=click.Choice(sorted(PROJECTIONS)))
@click.option("--all", "everything", is_flag=True, help="Rebuild every projection.")
def projections_rebuild(name: str | None, everything: bool) -> None:
    """Rebuild NAME (or --all) from the whole log and swap it in atomically."""
    if bool(name) == everything:
        raise click.UsageError("give a projection NAME or --all, not both")
    names = sorted(PROJECTIONS) if everything else [name or ""]
    with open_services() as services:
        with services.engine.connect() as conn:
            total = services.reader.backlog(conn, Checkpoint()).events
        chosen = [PROJECTIONS[each] for each in names]
        history = order_history(services.store)
        with click.progressbar(length=total, label=f"rebuilding {', '.join(names)}") as bar:
            try:
                rebuild(services.engine, services.reader, history, chosen, bar.update)
            except RebuildFailed as failed:
                raise click.ClickException(str(failed)) from None
    click.echo(f"rebuilt {', '.join(names)}")


@projections.command("verify")
def projections_verify() -> None:
    """Recompute every model from the events and compare; exit 1 on any difference."""
    with open_services() as services:
        history = order_history(services.store)
        try:
            differences = verify(services.engine, services.reader, history, PROJECTIONS.values())
        except RebuildFailed as failed:
            raise click.ClickException(str(failed)) from None
    for difference in differences:
        click.echo(str(difference))
    if differences:
        click.echo(f"{len(differences)} difference(s) between the read models and the events")
        raise SystemExit(1)
    click.echo("every read model matches the events")


@projections.command("retry")
@click.argument("name", type=click.Choice(sorted(PROJECTIONS)))
def projections_retry(name: str) -> None:
    """Take NAME's parked events back and run it again."""
    with open_services() as services:
        result = services.runner.retry(name)
    click.echo(f"{name}: applied {result.applied} event(s), now {result.state}")
    if result.state == "stuck":
        raise SystemExit(1)


COMMANDS = [show, list_orders, top_products, revenue, customers, projections]
