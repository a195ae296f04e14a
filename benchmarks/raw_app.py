"""The limit for the pipeline: the same Celery app, settings and producer, but
``orders.handle_command`` does only what ``raw_cps`` measures (psycopg2 reading the
stream, inserting a new order's event, committing) and answers.

What it leaves out is what a command adds on top of the database's own work: the command
log, the projections' wake-up, validating the envelope and deciding.
"""

from __future__ import annotations

import os
from typing import Any

import psycopg2
from celery import Task

from benchmarks.handler import raw_create_order
from benchmarks.scratch import libpq_dsn
from commands import Outcome
from commands.transport import HANDLE_COMMAND
from workers.app import create_app

app = create_app()
_connection: Any = None


def handle_command(task: Task, envelope: Any) -> dict[str, Any]:
    global _connection
    if _connection is None:  # one per pool process, made after the fork
        _connection = psycopg2.connect(libpq_dsn(os.environ["ORDERS_DATABASE_URL"]))
    payload = envelope["payload"]
    raw_create_order(_connection, str(payload["order_id"]), str(payload["customer_id"]))
    return Outcome(status="accepted", command_id=str(envelope["command_id"])).to_dict()


app.tasks.unregister(HANDLE_COMMAND)
app.task(name=HANDLE_COMMAND, bind=True, shared=False)(handle_command)
