"""Beat prunes daily only when ORDERS_RETENTION_DAYS is set (workers/celery_config.py)."""

from __future__ import annotations

from celery import Celery
from celery.schedules import crontab

from bootstrap import Settings
from commands.transport import PROJECTIONS_QUEUE
from workers import tasks
from workers.celery_config import celery_config
from workers.tasks import PRUNE


def test_beat_prunes_daily_on_the_projections_queue_when_retention_is_set() -> None:
    config = celery_config(Settings.from_env({"ORDERS_RETENTION_DAYS": "45"}))

    entry = config["beat_schedule"]["prune"]

    assert entry["task"] == PRUNE == "orders.prune"
    assert entry["kwargs"] == {"days": 45}
    assert entry["options"]["queue"] == PROJECTIONS_QUEUE
    # A time of day survives beat restarts, which an interval of a day would not.
    assert isinstance(entry["schedule"], crontab)
    assert entry["schedule"].hour == {3}
    assert config["task_routes"][PRUNE] == {"queue": PROJECTIONS_QUEUE}
    assert "sweep-projections" in config["beat_schedule"]


def test_beat_prunes_nothing_when_retention_is_unset() -> None:
    config = celery_config(Settings.from_env({}))

    assert PRUNE not in [entry["task"] for entry in config["beat_schedule"].values()]
    assert "sweep-projections" in config["beat_schedule"]


def test_workers_know_the_prune_task() -> None:
    app = Celery("orders", set_as_current=False)  # as create_app builds it, minus the runtime
    app.conf.update(celery_config(Settings.from_env({"ORDERS_RETENTION_DAYS": "45"})))
    tasks.register(app)

    assert PRUNE in app.tasks
