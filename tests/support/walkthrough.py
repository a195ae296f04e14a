"""The README's walkthrough: its four commands, and what the system shows after them."""

from __future__ import annotations

from decimal import Decimal

from commands import AddItem, CreateOrder, PayOrder
from tests.support.commands import ORDER

WALKTHROUGH = (
    "Order(id=order-001, customer=customer-123, items=2, total=$6.00, status=paid, version=4)"
)
"""The order after the walkthrough, as ``str(order)`` shows it."""

WALKTHROUGH_TAIL = """\
=== Example 3: Pay Order ===
✓ Order paid
✓ Final state: Order(id=order-001, customer=customer-123, items=2, total=$6.00, status=paid, version=4)

=== Example 4: View History ===

Event History for order-001:
Version    Event Type           Data
----------------------------------------------------------------------
1          OrderCreated         {'customer_id': 'customer-123', ...}
2          ItemAdded            {'item_id': 'apple', ...}
3          ItemAdded            {'item_id': 'banana', ...}
4          OrderPaid            {'payment_method': 'credit_card', ...}

=== Read Model ===
order_summary: id=order-001, customer=customer-123, items=2, units=5, total=$6.00, status=paid, version=4
events:        Order(id=order-001, customer=customer-123, items=2, total=$6.00, status=paid, version=4)
"""
"""How ``orders demo`` ends its output."""


def walkthrough_commands() -> list[AddItem | CreateOrder | PayOrder]:
    """The walkthrough's commands, each with a fresh command id."""
    return [
        CreateOrder(ORDER, customer_id="customer-123"),
        AddItem(ORDER, item_id="apple", quantity=3, price=Decimal("1.50")),
        AddItem(ORDER, item_id="banana", quantity=2, price=Decimal("0.75")),
        PayOrder(ORDER, payment_method="credit_card"),
    ]
