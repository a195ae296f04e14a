"""The peer's application: module level, because ``eventsourcing`` names classes by topic."""

from __future__ import annotations

from typing import Any

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event


class PeerOrder(Aggregate):
    @event("Created")
    def __init__(self, customer_id: str) -> None:
        self.customer_id = customer_id


class PeerOrders(Application[Any]):
    def create(self, customer_id: str) -> Any:
        order = PeerOrder(customer_id=customer_id)
        self.save(order)
        return order.id
