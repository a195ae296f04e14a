"""The projections' cache of Orders after each event: right, and bounded by its size."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from domain.events import Event, ItemAdded, OrderCreated
from domain.order import Order, fold
from readmodels.order_history import OrderHistory, size_of

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def events_of(order_id: str, items: int) -> list[Event]:
    stream: list[Event] = [
        OrderCreated(
            aggregate_id=order_id,
            version=1,
            event_id=f"{order_id}-1",
            timestamp=NOW,
            customer_id="customer-1",
        )
    ]
    for index in range(items):
        stream.append(
            ItemAdded(
                aggregate_id=order_id,
                version=index + 2,
                event_id=f"{order_id}-{index + 2}",
                timestamp=NOW,
                item_id=f"item-{index}",
                quantity=1,
                price=Decimal("1.00"),
            )
        )
    return stream


def test_each_event_gets_the_order_it_leaves_behind() -> None:
    stream = events_of("order-1", 5)
    history = OrderHistory(lambda _order, _version: [])

    orders = [history.after(event) for event in stream]

    assert orders == [fold(Order("order-1"), stream[: i + 1]) for i in range(len(stream))]


def test_a_miss_folds_the_earlier_events_loaded_from_the_store() -> None:
    stream = events_of("order-1", 5)
    loads: list[tuple[str, int]] = []

    def load_until(order_id: str, version: int) -> list[Event]:
        loads.append((order_id, version))
        return stream[:version]

    history = OrderHistory(load_until)

    assert history.after(stream[4]) == fold(Order("order-1"), stream[:5])
    assert loads == [("order-1", 4)]


def test_the_cache_is_bounded_by_the_lines_it_holds_not_by_how_many_orders() -> None:
    # One order of 2,000 items folded event by event: each state holds up to 2,000
    # lines. Counting entries, 2,000 states would all be kept (about 2 million lines).
    stream = events_of("order-big", 2_000)
    history = OrderHistory(lambda _order, _version: [], capacity=10_000)

    for event in stream:
        history.after(event)

    assert history.size <= 10_000
    assert history.size == sum(size_of(order) for order in history._states.values())
    # The newest state stays: the next event of the order starts from it.
    assert history._states[("order-big", 2_001)] == fold(Order("order-big"), stream)


def test_small_orders_fill_it_by_count_as_before() -> None:
    history = OrderHistory(lambda _order, _version: [], capacity=1_000)
    for index in range(2_000):
        history.after(events_of(f"order-{index}", 0)[0])

    assert history.size == 1_000
    assert len(history._states) == 1_000
