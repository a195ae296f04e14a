"""What producers and workers agree on about the broker: task names, queues, and the
Celery settings both sides need (JSON only, bounded publishing).

Producers need only this package and Celery: they send by task name, never importing
the workers' code.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

HANDLE_COMMAND = "orders.handle_command"
WAKE_PROJECTIONS = "orders.wake_projections"
SWEEP_PROJECTIONS = "orders.sweep_projections"
COMMANDS_QUEUE = "orders.commands"
PROJECTIONS_QUEUE = "orders.projections"

BROKER_URL_VARIABLE = "ORDERS_BROKER_URL"
RESULT_BACKEND_VARIABLE = "ORDERS_RESULT_BACKEND"
DEFAULT_BROKER_URL = "memory://localhost/"
BROKER_SCHEMES = ("redis://", "rediss://", "memory://")
BACKEND_SCHEMES = ("redis://", "rediss://", "cache+memory://")


class BrokerConfigError(ValueError):
    """A broker or result-backend URL the system cannot use."""


def checked_url(variable: str, raw: str, schemes: tuple[str, ...]) -> str:
    if not raw.startswith(schemes):
        raise BrokerConfigError(
            f"{variable} must start with one of {', '.join(schemes)}, got {raw!r}"
        )
    return raw


@dataclass(frozen=True)
class Endpoints:
    """Where commands go and where their outcomes come back."""

    broker_url: str = DEFAULT_BROKER_URL
    result_backend: str | None = None

    def __post_init__(self) -> None:
        checked_url("broker URL", self.broker_url, BROKER_SCHEMES)
        if self.result_backend is not None:
            checked_url("result backend", self.result_backend, BACKEND_SCHEMES)

    @property
    def outcome_backend(self) -> str:
        """The configured backend; else the broker when it is Redis; else in-process."""
        if self.result_backend:
            return self.result_backend
        if self.broker_url.startswith(("redis://", "rediss://")):
            return self.broker_url
        return "cache+memory://"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Endpoints:
        source = os.environ if env is None else env
        return cls(
            broker_url=source.get(BROKER_URL_VARIABLE) or DEFAULT_BROKER_URL,
            result_backend=source.get(RESULT_BACKEND_VARIABLE) or None,
        )


def common_celery_config(
    endpoints: Endpoints, *, result_expires: int, publish_timeout: float
) -> dict[str, Any]:
    """Settings a producer's and a worker's Celery app must share."""
    retries = 3
    # Socket timeouts bound each try; the retry policy bounds how many. Together they
    # keep a producer from blocking forever while Redis is down (celery #4296).
    socket_timeout = max(0.5, publish_timeout / (retries + 1))
    redis_options = {
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": socket_timeout,
        "socket_keepalive": True,
        "health_check_interval": 10,
    }
    broker_options: dict[str, Any] = dict(redis_options)
    if endpoints.broker_url.startswith("memory://"):
        # The in-memory transport polls; its default second per poll makes the demo crawl.
        broker_options = {"polling_interval": 0.01}
    retry_policy = {
        "max_retries": retries,
        "interval_start": 0,
        "interval_step": 0.2,
        "interval_max": 0.5,
    }
    return {
        "broker_url": endpoints.broker_url,
        "result_backend": endpoints.outcome_backend,
        "result_expires": result_expires,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "broker_connection_timeout": socket_timeout,
        "broker_transport_options": broker_options,
        # The result backend retries on its own (20 times by default) before a send.
        "result_backend_transport_options": {**redis_options, "retry_policy": retry_policy},
        "redis_socket_timeout": socket_timeout,
        "redis_socket_connect_timeout": socket_timeout,
        "redis_socket_keepalive": True,
        "task_publish_retry": True,
        "task_publish_retry_policy": retry_policy,
    }
