"""The Celery app: ``celery -A workers.app worker`` works as Celery users expect.

Building the app reads the configuration and connects to nothing; connections are made
per worker process when the first task needs them.
"""

from __future__ import annotations

from celery import Celery

from workers import runtime, tasks
from workers.celery_config import celery_config
from workers.config import Settings
from workers.readiness import DatabaseReady


def create_app(settings: Settings | None = None) -> Celery:
    settings = settings or Settings.from_env()
    runtime.configure(settings)
    app = Celery("orders", set_as_current=False)
    app.conf.update(celery_config(settings))
    tasks.register(app)
    # Before it takes anything: a worker that cannot serve exits instead of failing
    # every command (workers/readiness.py).
    app.steps["worker"].add(DatabaseReady)
    return app


app = create_app()
