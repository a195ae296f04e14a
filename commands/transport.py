"""What producers and workers agree on about the broker: task names, queues, and the
Celery settings both sides need (JSON only, bounded publishing).

Producers need only this package and Celery: they send by task name, never importing
the workers' code.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

HANDLE_COMMAND = "orders.handle_command"
WAKE_PROJECTIONS = "orders.wake_projections"
SWEEP_PROJECTIONS = "orders.sweep_projections"
COMMANDS_QUEUE = "orders.commands"
PROJECTIONS_QUEUE = "orders.projections"
SENT_AT_HEADER = "orders_sent_at"
"""Optional message header: when the producer sent the command (Unix seconds)."""

BROKER_URL_VARIABLE = "ORDERS_BROKER_URL"
RESULT_BACKEND_VARIABLE = "ORDERS_RESULT_BACKEND"
PUBLISH_TIMEOUT_VARIABLE = "ORDERS_PUBLISH_TIMEOUT"
REDIS_PASSWORD_VARIABLE = "ORDERS_REDIS_PASSWORD"  # noqa: S105 (a variable's name)
DEFAULT_BROKER_URL = "memory://localhost/"
DEFAULT_PUBLISH_TIMEOUT = 10.0
MIN_PUBLISH_TIMEOUT = 0.5
BROKER_SCHEMES = ("redis://", "rediss://", "memory://")
BACKEND_SCHEMES = ("redis://", "rediss://", "cache+memory://")


class BrokerConfigError(ValueError):
    """A broker or result-backend setting the system cannot use."""


def checked_url(variable: str, raw: str, schemes: tuple[str, ...]) -> str:
    if not raw.startswith(schemes):
        raise BrokerConfigError(
            f"{variable} must start with one of {', '.join(schemes)}, got {redacted(raw)!r}"
        )
    return raw


def checked_publish_timeout(variable: str, raw: str) -> float:
    """Seconds a send may take before it gives up: a finite number of at least 0.5."""
    try:
        value = float(raw)
    except ValueError:
        raise BrokerConfigError(f"{variable} must be a number, got {raw!r}") from None
    if not math.isfinite(value) or value < MIN_PUBLISH_TIMEOUT:
        raise BrokerConfigError(
            f"{variable} must be a finite number of at least {MIN_PUBLISH_TIMEOUT}, got {raw}"
        )
    return value


def socket_timeout_for(publish_timeout: float) -> float:
    """Each connection attempt and each command waits at most this long, so that a few
    tries fit in the publish timeout (celery #4296: a send must not block forever)."""
    return max(0.25, publish_timeout / 4)


_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*")
_SECRET_PARAMETER = re.compile(r"([?&;][^=&#]*(?:pass|secret)[^=&#]*=)[^&]*", re.IGNORECASE)


def redacted(url: object) -> str:
    """The URL with any password hidden, so it can be printed: in the user part, and in
    query parameters such as ``?password=``, which drivers honour too.

    A password written into the URL unescaped may hold ``@ / : # ?``: everything up to
    the last ``@`` counts as the user part, so such a password is hidden whole (a URL
    with an ``@`` further on, in its path or query, may show less than it could)."""
    text = str(url)
    scheme, separator, rest = text.partition("://")
    if not separator or not _SCHEME.fullmatch(scheme):
        return text
    user, at, host = rest.rpartition("@")
    if at and ":" in user:
        rest = f"{user.split(':', 1)[0]}:***@{host}"
    rest = _SECRET_PARAMETER.sub(r"\1***", rest)
    return f"{scheme}://{rest}"


def with_redis_password(url: str, password: str | None) -> str:
    """A ``redis://`` or ``rediss://`` URL with ``password`` in its user part,
    percent-encoded (any character works). A URL with a password of its own, any other
    URL, or no password: the URL as it is. The query (``?ssl_cert_reqs=required``) is
    kept; a user name stays, for a Redis ACL user (``redis://orders@redis:6379/0``)."""
    if not password or not url.startswith(("redis://", "rediss://")):
        return url
    parts = urlsplit(url)
    own_password = parts.password is not None or any(
        key.lower() == "password" for key, _ in parse_qsl(parts.query, keep_blank_values=True)
    )
    if own_password:
        return url
    user, _, host = parts.netloc.rpartition("@")
    netloc = f"{user}:{quote(password, safe='')}@{host}"
    return urlunsplit(parts._replace(netloc=netloc))


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
    def in_process(self) -> bool:
        """Celery's in-memory transport: only a worker in this very process sees it."""
        return self.broker_url.startswith("memory://")

    @property
    def outcome_backend(self) -> str:
        """The configured backend; else the broker when it is Redis; else in-process."""
        if self.result_backend:
            return self.result_backend
        if self.broker_url.startswith(("redis://", "rediss://")):
            return self.broker_url
        return "cache+memory://"


def common_celery_config(
    endpoints: Endpoints, *, result_expires: int, publish_timeout: float
) -> dict[str, Any]:
    """Settings a producer's and a worker's Celery app must share."""
    retries = 3
    # Socket timeouts bound each try; the retry policy bounds how many. Together they
    # keep a producer from blocking forever while Redis is down (celery #4296).
    socket_timeout = socket_timeout_for(publish_timeout)
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
