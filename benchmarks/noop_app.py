"""The baseline for the pipeline: the same Celery app and settings, the same producer,
but ``orders.handle_command`` does nothing and answers at once."""

from __future__ import annotations

from typing import Any

from celery import Task

from commands import Outcome
from commands.transport import HANDLE_COMMAND
from workers.app import create_app

app = create_app()


def handle_command(task: Task, envelope: Any) -> dict[str, Any]:
    return Outcome(status="accepted", command_id=str(envelope.get("command_id"))).to_dict()


app.tasks.unregister(HANDLE_COMMAND)
app.task(name=HANDLE_COMMAND, bind=True, shared=False)(handle_command)
