"""Celery settings, each with the reason it is set (see DESIGN.md, "Celery settings")."""

from __future__ import annotations

import ssl
from typing import Any

from celery.schedules import crontab
from kombu.entity import Exchange, Queue

from bootstrap import Settings
from commands.transport import (
    COMMANDS_QUEUE,
    HANDLE_COMMAND,
    PROJECTIONS_QUEUE,
    SWEEP_PROJECTIONS,
    WAKE_PROJECTIONS,
    common_celery_config,
)
from workers.tasks import PRUNE


def celery_config(settings: Settings) -> dict[str, Any]:
    config = common_celery_config(
        settings.endpoints,
        result_expires=settings.result_expires,
        publish_timeout=settings.publish_timeout,
    )
    # Redis redelivers a task not acknowledged within this time; it must stay well above
    # the time limit, or a slow command runs twice at once.
    options = config["broker_transport_options"]
    options["visibility_timeout"] = settings.visibility_timeout
    # kombu looks for expired unacknowledged messages only every interval x throttle
    # seconds (100 by default): a killed worker's commands would wait that long after
    # their visibility timeout. Look at least every 10 s, or sooner for short timeouts.
    options["unacked_restore_interval"] = max(1, min(10, settings.visibility_timeout // 2))
    options["unacked_restore_throttle"] = 1
    config.update(
        # A worker killed mid-command gets it redelivered; the command log makes that safe.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        # An unacknowledged prefetched command must not wait behind a slow one.
        worker_prefetch_multiplier=1,
        # The soft limit raises in the task, so a command that overruns it is recorded as
        # failed and its producer told; the hard one kills the process 10 s later.
        task_time_limit=settings.task_time_limit,
        task_soft_time_limit=_soft(settings.task_time_limit),
        # Commands get their own, short limit. The pool keeps a timer per task until its
        # soft limit passes, even after the task is done (about 0.5 kB each; celery#5200):
        # 25,000 commands at 400/s grew the worker by 35 MB under 300 s, by 3 MB under 30 s.
        task_annotations={
            HANDLE_COMMAND: {
                "time_limit": settings.command_time_limit,
                "soft_time_limit": _soft(settings.command_time_limit),
            }
        },
        # Otherwise a task keeps running after the connection drops *and* is redelivered.
        worker_cancel_long_running_tasks_on_connection_loss=True,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,
        # On SIGTERM, requeue unacknowledged messages instead of waiting out the timeout.
        worker_soft_shutdown_timeout=10.0,
        worker_enable_soft_shutdown_on_idle=True,
        task_default_queue=COMMANDS_QUEUE,
        task_queues=[_queue(COMMANDS_QUEUE), _queue(PROJECTIONS_QUEUE)],
        task_routes={
            HANDLE_COMMAND: {"queue": COMMANDS_QUEUE},
            WAKE_PROJECTIONS: {"queue": PROJECTIONS_QUEUE},
            SWEEP_PROJECTIONS: {"queue": PROJECTIONS_QUEUE},
            PRUNE: {"queue": PROJECTIONS_QUEUE},
        },
        # The sweep catches up whatever a lost wake-up missed. A missed tick is harmless,
        # so the schedule needs no file on disk.
        beat_scheduler="celery.beat:Scheduler",
        beat_schedule={
            "sweep-projections": {
                "task": SWEEP_PROJECTIONS,
                "schedule": settings.sweep_interval,
                "options": {"queue": PROJECTIONS_QUEUE, "expires": settings.sweep_interval},
            },
            **_retention(settings),
        },
        # Messages that are not even readable as tasks are recorded, not just logged.
        worker_consumer="workers.consumer:RecordingConsumer",
        **_transport(settings.broker_url),
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
    )
    return config


def _retention(settings: Settings) -> dict[str, Any]:
    """The daily prune (workers/tasks.py), when ORDERS_RETENTION_DAYS is set. At a time
    of day, not every 24 hours: beat keeps no schedule file, so an interval would start
    over with every restart of beat and might never come due."""
    if settings.retention_days is None:
        return {}
    entry = {
        "task": PRUNE,
        "schedule": crontab(hour=3, minute=30),
        "kwargs": {"days": settings.retention_days},
        "options": {"queue": PROJECTIONS_QUEUE, "expires": 12 * 3600},
    }
    return {"prune": entry}


def _transport(broker_url: str) -> dict[str, Any]:
    """On Redis, the transport that dead-letters what kombu could not read
    (workers/broker.py) instead of stopping on it."""
    if not broker_url.startswith(("redis://", "rediss://")):
        return {}
    settings: dict[str, Any] = {"broker_transport": "workers.broker:Transport"}
    if broker_url.startswith("rediss://"):
        # kombu turns TLS on from the URL's scheme only for its own transport name, and
        # then without checking the certificate; a transport given by class gets it here,
        # checked.
        settings["broker_use_ssl"] = {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    return settings


def _soft(limit: int) -> int:
    return max(1, limit - 10)


def _queue(name: str) -> Queue:
    # Each queue its own exchange and key: without them both queues would bind to the
    # default exchange's key and projection wake-ups would land among the commands.
    return Queue(name, Exchange(name, type="direct"), routing_key=name)  # type: ignore[no-untyped-call]
