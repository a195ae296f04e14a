"""Prometheus metrics: what the workers and the API export, and the collectors that read
the read models' lag and the queues' depth when they are scraped.

A worker is several processes (Celery's prefork pool): each child writes its counters to
files in ``PROMETHEUS_MULTIPROC_DIR`` and the parent serves their sum, so a child that
is replaced loses nothing. The variable must be set before ``prometheus_client`` is first
imported in the process, so it is imported here, lazily, only once metrics are wanted
(``ORDERS_METRICS_PORT`` set); without them every observation is a no-op.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bootstrap.services import Services

MULTIPROCESS = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

EXPORTED = {
    "orders_commands_total": "commands decided, by command type and status",
    "orders_command_seconds": "time from loading the order to the commit (or the recorded refusal)",
    "orders_command_end_to_end_seconds": "time from the producer's send to the outcome",
    "orders_version_conflicts_total": "decisions made again after another writer appended first",
    "orders_db_retries_total": "commands put off because the database could not serve",
    "orders_dead_letters_total": "messages dead-lettered, by reason",
    "orders_projection_events_total": "events applied to each read model",
    "orders_projection_lag_events": "events of the log a read model has not applied",
    "orders_projection_lag_seconds": "age of the oldest event a read model has not applied",
    "orders_projection_stuck": "1 while a read model is stopped on a parked event",
    "orders_read_replica_lag_seconds": "how far the read database's replay is behind its "
    "primary (0 when the reads go to the primary)",
    "orders_read_replica_lag_bytes": "WAL the read database has received and not replayed",
    "orders_queue_depth": "messages waiting in each queue",
    "orders_http_requests_total": "API requests, by route, method and status",
    "orders_http_request_seconds": "API request latency, by route",
}
"""Every metric this system exports, with what it means (the Grafana dashboard's test
holds its queries against these names)."""


DEAD_LETTER_KINDS = {
    "InvalidCommand": "invalid_command",
    "undecodable message": "undecodable",
    "not a task message": "not_a_task",
    "not a message": "not_a_message",
    "unknown task": "unknown_task",
    "invalid task message": "invalid_task",
    "malformed task message": "malformed_task",
}


def dead_letter_kind(reason: str) -> str:
    """The ``reason`` label of a dead letter: its kind, from a short fixed list (the
    reason's text names what a producer sent, which would make a label per message)."""
    head = reason.split(":", 1)[0].split("(", 1)[0].strip()
    return DEAD_LETTER_KINDS.get(head, "other")


def command_type_label(kind: str) -> str:
    """Command types producers may invent stay out of the labels, for the same reason."""
    from commands.messages import COMMAND_TYPES

    return kind if kind in COMMAND_TYPES else "unknown"


def prepare_multiprocess() -> str:
    """Point ``prometheus_client`` at a directory for this process tree's files (the one
    ``PROMETHEUS_MULTIPROC_DIR`` names, or a new one); call before anything imports
    ``prometheus_client``. A previous run's files there are not ours: removed."""
    path = Path(os.environ.get(MULTIPROCESS) or tempfile.mkdtemp(prefix="orders-metrics-"))
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink()
    os.environ[MULTIPROCESS] = str(path)
    return str(path)


def exported(
    services_of: Callable[[], Services], queues: tuple[str, ...] = ()
) -> tuple[Metrics, Any]:
    """This process's metrics and the registry a scrape reads: the counters (every
    process's files, in multiprocess mode), the read models' lag and, given ``queues``,
    their depth. ``services_of`` gives the services the gauges read, at scrape time."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry(auto_describe=False)
    if MULTIPROCESS in os.environ:
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        metrics = Metrics(registry=None)  # its values go to the files read above
    else:
        metrics = Metrics(registry=registry)
    registry.register(ReadModelCollector(services_of))
    if queues:
        registry.register(QueueCollector(services_of, queues))
    return metrics, registry


class NoMetrics:
    """What the code observes when no metrics are exported: nothing."""

    def command(self, command_type: str, status: str, seconds: float | None) -> None: ...

    def end_to_end(self, seconds: float) -> None: ...

    def conflict(self) -> None: ...

    def db_retry(self) -> None: ...

    def dead_letter(self, reason: str) -> None: ...

    def projection_events(self, projection: str, count: int) -> None: ...

    def request(self, route: str, method: str, status: int, seconds: float) -> None: ...


class Metrics(NoMetrics):
    def __init__(self, registry: Any) -> None:
        from prometheus_client import Counter, Histogram

        def counter(name: str, labels: tuple[str, ...] = ()) -> Counter:
            return Counter(name.removesuffix("_total"), EXPORTED[name], labels, registry=registry)

        def histogram(name: str, labels: tuple[str, ...] = ()) -> Histogram:
            return Histogram(
                name, EXPORTED[name], labels, registry=registry, buckets=LATENCY_BUCKETS
            )

        self._commands = counter("orders_commands_total", ("type", "status"))
        self._command_seconds = histogram("orders_command_seconds")
        self._end_to_end = histogram("orders_command_end_to_end_seconds")
        self._conflicts = counter("orders_version_conflicts_total")
        self._db_retries = counter("orders_db_retries_total")
        self._dead_letters = counter("orders_dead_letters_total", ("reason",))
        self._projection_events = counter("orders_projection_events_total", ("projection",))
        self._requests = counter("orders_http_requests_total", ("route", "method", "status"))
        self._request_seconds = histogram("orders_http_request_seconds", ("route",))

    def command(self, command_type: str, status: str, seconds: float | None) -> None:
        self._commands.labels(command_type_label(command_type), status).inc()
        if seconds is not None:
            self._command_seconds.observe(seconds)

    def end_to_end(self, seconds: float) -> None:
        self._end_to_end.observe(max(seconds, 0.0))

    def conflict(self) -> None:
        self._conflicts.inc()

    def db_retry(self) -> None:
        self._db_retries.inc()

    def dead_letter(self, reason: str) -> None:
        self._dead_letters.labels(dead_letter_kind(reason)).inc()

    def projection_events(self, projection: str, count: int) -> None:
        if count:
            self._projection_events.labels(projection).inc(count)

    def request(self, route: str, method: str, status: int, seconds: float) -> None:
        self._requests.labels(route, method, str(status)).inc()
        self._request_seconds.labels(route).observe(seconds)


class ReadModelCollector:
    """The read models' lag and stuck state, read from the database at each scrape."""

    def __init__(self, services_of: Callable[[], Services]) -> None:
        self._services_of = services_of

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        from readmodels.maintenance import status
        from readmodels.projections import PROJECTIONS

        families = {
            name: GaugeMetricFamily(name, EXPORTED[name], labels=["projection"])
            for name in (
                "orders_projection_lag_events",
                "orders_projection_lag_seconds",
                "orders_projection_stuck",
            )
        }
        try:
            services = self._services_of()
            report = status(services.engine, services.reader, PROJECTIONS.values())
        except Exception:  # a scrape must not fail: the gauges are simply absent
            return
        for entry in report:
            families["orders_projection_lag_events"].add_metric([entry.name], entry.lag_events)
            families["orders_projection_lag_seconds"].add_metric([entry.name], entry.lag_seconds)
            families["orders_projection_stuck"].add_metric([entry.name], float(entry.stuck))
        yield from families.values()
        yield from self._replica(services)

    def _replica(self, services: Services) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        from readmodels.freshness import replica_lag

        lag = None
        try:
            if services.read_engine is not services.engine:
                with services.read_engine.connect() as conn:
                    lag = replica_lag(conn)
        except Exception:  # the replica down: its gauges are absent, the others stay
            return
        for name, value in (
            ("orders_read_replica_lag_seconds", lag.seconds if lag else 0.0),
            ("orders_read_replica_lag_bytes", lag.bytes if lag else 0),
        ):
            yield GaugeMetricFamily(name, EXPORTED[name], value=value)


class QueueCollector:
    """How many messages wait in each queue (the Redis lists' lengths) at each scrape."""

    def __init__(self, services_of: Callable[[], Services], queues: tuple[str, ...]) -> None:
        self._services_of = services_of
        self._queues = queues

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily
        from redis import Redis
        from redis.exceptions import RedisError

        family = GaugeMetricFamily(
            "orders_queue_depth", EXPORTED["orders_queue_depth"], labels=["queue"]
        )
        broker_url = self._services_of().settings.broker_url
        if not broker_url.startswith(("redis://", "rediss://")):
            return
        client = Redis.from_url(broker_url, socket_timeout=2, socket_connect_timeout=2)
        try:
            for queue in self._queues:
                family.add_metric([queue], client.llen(queue))
        except RedisError:
            return
        finally:
            client.close()
        yield family
