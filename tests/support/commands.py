"""Command builders: one order's commands with the walkthrough's defaults.

The order comes first and is always named (``create(ORDER)``, ``add("o1", "apple", 1,
"1.00")``); the rest of the fields default to the README's walkthrough, and any other
field of the command (``command_id``, ``expected_version``, ``correlation_id``) passes
through as a keyword.
"""

from __future__ import annotations

from typing import Any

from commands import AddItem, CancelOrder, CreateOrder, PayOrder, RemoveItem

ORDER = "order-001"
CUSTOMER = "customer-123"


def create(order: str, customer: str = CUSTOMER, **fields: Any) -> CreateOrder:
    return CreateOrder(order, customer_id=customer, **fields)


def add(
    order: str, item: str = "apple", quantity: int = 3, price: Any = "1.50", **fields: Any
) -> AddItem:
    return AddItem(order, item_id=item, quantity=quantity, price=price, **fields)


def remove(order: str, item: str = "apple", **fields: Any) -> RemoveItem:
    return RemoveItem(order, item_id=item, **fields)


def pay(order: str, method: str = "credit_card", **fields: Any) -> PayOrder:
    return PayOrder(order, payment_method=method, **fields)


def cancel(order: str, reason: str = "changed my mind", **fields: Any) -> CancelOrder:
    return CancelOrder(order, reason=reason, **fields)
