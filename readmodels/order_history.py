"""The Order as it was right after a given event, for projections to read.

Events arrive in commit order, so the state before an event is usually the one the
previous event of the same order left, still in the cache; on a miss (the first event
of a run, or an eviction) the order's earlier events are loaded and folded.

The cache is bounded by what its Orders hold, not by how many there are: an Order
costs a unit plus one per line, and one order with thousands of lines, folded event
by event, must not fill the process (1.38 GB for 10,000 items, with a count bound).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from domain.events import Event
from domain.order import Order, evolve, fold

LoadUntil = Callable[[str, int], list[Event]]

DEFAULT_CAPACITY = 200_000
"""Units of cache: an Order and each of its lines count one. About 100 bytes a unit,
so some 20 MB, and still 50,000 small orders, as many as before."""


def size_of(order: Order) -> int:
    return 1 + len(order.lines)


class OrderHistory:
    def __init__(self, load_until: LoadUntil, capacity: int = DEFAULT_CAPACITY) -> None:
        self._load_until = load_until
        self._capacity = capacity
        self._states: OrderedDict[tuple[str, int], Order] = OrderedDict()
        self.size = 0

    def after(self, event: Event) -> Order:
        key = (event.aggregate_id, event.version)
        order = self._states.get(key)
        if order is None:
            before = self._states.get((event.aggregate_id, event.version - 1))
            if before is None and event.version == 1:
                before = Order(event.aggregate_id)  # nothing came before the first event
            if before is None:
                earlier = self._load_until(event.aggregate_id, event.version - 1)
                before = fold(Order(event.aggregate_id), earlier)
            order = evolve(before, event)
            self._remember(key, order)
        return order

    def _remember(self, key: tuple[str, int], order: Order) -> None:
        self._states[key] = order
        self._states.move_to_end(key)
        self.size += size_of(order)
        while self.size > self._capacity and len(self._states) > 1:
            _, evicted = self._states.popitem(last=False)
            self.size -= size_of(evicted)
