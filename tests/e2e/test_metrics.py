"""Prometheus metrics scraped from a real worker and a real API server, as Prometheus
would: the counters must match what was sent, by status, and survive pool restarts."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from bootstrap.metrics import EXPORTED
from commands import AddItem, Command, CreateOrder, PayOrder
from commands.client import CommandClient
from readmodels.projections import PROJECTIONS
from tests.support.api_server import ApiServer
from tests.support.proc import children
from tests.support.servers import free_port
from tests.support.workers import WorkerProcess

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
WORKER_METRICS = set(EXPORTED) - {"orders_http_requests_total", "orders_http_request_seconds"}


def scrape(url: str) -> Samples:
    text = httpx.get(url, timeout=10).text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: Samples, name: str) -> float:
    return sum(found for (named, _), found in samples.items() if named == name)


def names(samples: Samples) -> set[str]:
    # A counter's samples are name_total (and name_created), a histogram's name_bucket...
    found = set()
    for name, _ in samples:
        for suffix in ("_bucket", "_count", "_sum", "_created"):
            if name.endswith(suffix) and name.removesuffix(suffix) in EXPORTED:
                name = name.removesuffix(suffix)
        found.add(name)
    return found


def eventually(check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("not reached in time")
        time.sleep(0.2)


def send_all(client: CommandClient, commands: list[Command]) -> Counter[tuple[str, str]]:
    receipts = [(command, client.send(command)) for command in commands]
    return Counter(
        (command.command_type, receipt.wait(timeout=60).status) for command, receipt in receipts
    )


def a_mix(batch: str) -> list[Command]:
    """Accepted and rejected commands of three types."""
    orders = [f"metrics-{batch}-{n}" for n in range(5)]
    commands: list[Command] = [CreateOrder(order, "customer-m") for order in orders]
    commands += [AddItem(order, "sku-1", 2, "1.50") for order in orders[:3]]
    commands += [PayOrder(order, "card") for order in orders[:2]]  # accepted: lines to pay
    commands += [PayOrder(f"metrics-{batch}-missing", "card")]  # rejected: no such order
    commands += [CreateOrder(orders[0], "customer-m")]  # rejected: exists already
    return commands


@pytest.fixture
def metrics_port() -> int:
    return free_port()


def test_a_workers_counters_match_the_commands_sent_and_survive_its_children(
    start_worker: Callable[..., WorkerProcess],
    client: CommandClient,
    broker: redis.Redis,
    metrics_port: int,
) -> None:
    worker = start_worker({"ORDERS_METRICS_PORT": str(metrics_port)})
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    eventually(lambda: httpx.get(url, timeout=2).status_code == 200)

    sent = send_all(client, a_mix("one"))
    pool = children(worker.process.pid)
    assert len(pool) == 2, worker.log()
    for child in pool:  # Celery replaces them; their counts must not go with them
        os.kill(child, signal.SIGKILL)
    eventually(lambda: len(set(children(worker.process.pid)) - set(pool)) == 2)
    sent += send_all(client, a_mix("two"))
    broker.lpush("orders.commands", b"not json at all")  # a dead letter

    assert sent[("CreateOrder", "rejected")] == 2 and sent[("PayOrder", "accepted")] == 4

    def settled() -> bool:
        found = scrape(url)
        return total(found, "orders_dead_letters_total") == 1 and all(
            value(found, "orders_projection_lag_events", projection=name) == 0
            for name in PROJECTIONS
        )

    eventually(settled)
    samples = scrape(url)
    counted = {
        (dict(labels)["type"], dict(labels)["status"]): found
        for (name, labels), found in samples.items()
        if name == "orders_commands_total"
    }
    assert counted == {key: float(count) for key, count in sent.items()}
    commands = sum(sent.values())
    assert value(samples, "orders_command_seconds_count") == commands
    assert value(samples, "orders_command_end_to_end_seconds_count") == commands
    assert value(samples, "orders_dead_letters_total", reason="not_a_message") == 1
    accepted_events = sum(count for (_, status), count in sent.items() if status == "accepted")
    for name in PROJECTIONS:
        assert value(samples, "orders_projection_events_total", projection=name) == accepted_events
        assert value(samples, "orders_projection_stuck", projection=name) == 0
        assert value(samples, "orders_projection_lag_seconds", projection=name) == 0
    assert value(samples, "orders_queue_depth", queue="orders.commands") == 0
    assert ("orders_queue_depth", frozenset({("queue", "orders.projections")})) in samples
    assert names(samples) >= WORKER_METRICS - {
        "orders_version_conflicts_total",  # counted only once a race is lost
        "orders_db_retries_total",  # counted only once the database is away
    }


def test_without_a_port_a_worker_serves_no_metrics(
    start_worker: Callable[..., WorkerProcess], metrics_port: int
) -> None:
    worker = start_worker()
    assert "metrics served" not in worker.log(None)
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=2)


@pytest.fixture
def api(worker_env: dict[str, str]) -> Iterator[ApiServer]:
    server = ApiServer(worker_env).wait_ready()
    yield server
    server.stop()


def test_the_api_counts_requests_by_route_and_serves_the_lag(api: ApiServer) -> None:
    for order in ("a", "b", "c"):
        assert httpx.get(f"{api.url}/api/orders/{order}", timeout=10).status_code == 404
    assert httpx.get(f"{api.url}/api/orders", timeout=10).status_code == 200

    samples = scrape(f"{api.url}/metrics")

    route = "/api/orders/{order_id}"
    assert value(samples, "orders_http_requests_total", route=route, method="GET", status="404")
    assert value(samples, "orders_http_request_seconds_count", route=route) == 3
    assert value(
        samples, "orders_http_requests_total", route="/api/orders", method="GET", status="200"
    )
    for name in PROJECTIONS:
        assert ("orders_projection_lag_events", frozenset({("projection", name)})) in samples
