"""A Python producer of orders commands written from docs/wire-protocol.md alone, with
Celery and nothing of this project: every command type for one order, one invalid
command, one command twice, and a Decimal price and a UUID id as Python values.
One JSON line per answer.

    python producer.py REDIS_URL ORDER_ID
"""

import json
import sys
import uuid
from decimal import Decimal

from celery import Celery

url, order_id = sys.argv[1:3]
app = Celery(broker=url, backend=url)


def envelope(kind, **payload):
    return {
        "type": kind,
        "schema": 1,
        "command_id": str(uuid.uuid4()),
        "payload": {"order_id": order_id, **payload},
    }


def send(label, command, task_id=None):
    task_id = task_id or str(command["command_id"])
    result = app.send_task(
        "orders.handle_command", args=[command], task_id=task_id, queue="orders.commands"
    )
    outcome = result.get(timeout=30)
    line = {"label": label, "command_id": str(command["command_id"]), "task_id": task_id}
    print(json.dumps({**line, "outcome": outcome}), flush=True)


send("create", envelope("CreateOrder", customer_id="customer-py"))
send("add apple", envelope("AddItem", item_id="apple", quantity=3, price="1.50"))
# Python values Celery's JSON carries typed: the worker reads their canonical strings.
typed = envelope("AddItem", item_id="pear", quantity=1, price=Decimal("2.25"))
typed["command_id"] = uuid.UUID(typed["command_id"])
send("add pear, Decimal price and UUID id", typed)
send("remove pear", envelope("RemoveItem", item_id="pear"))
send("invalid", envelope("AddItem", item_id="plum", quantity=0, price="1.00"))
twice = envelope("AddItem", item_id="fig", quantity=2, price="0.75")
send("twice, first", twice)
send("twice, again", twice)
send("pay, own task id", envelope("PayOrder", payment_method="card"), task_id=str(uuid.uuid4()))
send("cancel after pay", envelope("CancelOrder", reason="too late"))
