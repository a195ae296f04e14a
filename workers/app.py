"""The Celery app: ``celery -A workers.app worker`` works as Celery users expect.

Building the app reads the configuration and connects to nothing; connections are made
per worker process when the first task needs them.
"""

from __future__ import annotations

from celery import Celery

from bootstrap import Settings
from workers import batch, tasks
from workers.celery_config import celery_config
from workers.readiness import DatabaseReady
from workers.runtime import ProcessServices


def create_app(settings: Settings | None = None) -> Celery:
    settings = settings or Settings.from_env()
    app = Celery("orders", set_as_current=False)
    app.conf.update(celery_config(settings))
    # The one seam between Celery and the system: tasks, the consumer and the start-up
    # check find this process's services here.
    app.orders_services = ProcessServices(settings)
    tasks.register(app)
    # `celery -A workers.app worker --batch N` (or `orders worker --batch N`): commands
    # decided N at a time, one transaction each (workers/batch/).
    batch.install(app)
    # Before it takes anything: a worker that cannot serve exits instead of failing
    # every command (workers/readiness.py).
    app.steps["worker"].add(DatabaseReady)
    return app


app = create_app()
