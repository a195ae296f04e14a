"""monitoring/: the Grafana dashboard asks only for metrics the code exports, under the
names a scrape shows them by, and has the panels an operator needs; Prometheus scrapes
every service of docker-compose.yml that exports metrics, where it serves them; Grafana
reads the Prometheus of the compose file and the dashboards where they are mounted."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
import yaml
from prometheus_client import CollectorRegistry

import readmodels.maintenance
from bootstrap.metrics import EXPORTED, Metrics, QueueCollector, ReadModelCollector

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "monitoring"
DASHBOARD = MONITORING / "grafana" / "dashboards" / "orders.json"
PROMETHEUS = MONITORING / "prometheus.yml"
DATASOURCES = MONITORING / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
PROVIDERS = MONITORING / "grafana" / "provisioning" / "dashboards" / "orders.yml"

METRIC = re.compile(r"\borders_[a-z0-9_]+\b")
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def services() -> dict[str, Any]:
    found: dict[str, Any] = load_yaml(ROOT / "docker-compose.yml")["services"]
    return found


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def panels() -> Iterator[dict[str, Any]]:
    for panel in dashboard()["panels"]:
        yield panel
        yield from panel.get("panels", [])  # those inside a row


def queries() -> list[str]:
    return [target["expr"] for panel in panels() for target in panel.get("targets", [])]


# -- what a scrape of the code shows ----------------------------------------------------


def fake_services() -> Any:
    return SimpleNamespace(
        engine=None,
        read_engine=None,  # the same as ``engine``: no replica, its lag reads 0
        reader=None,
        settings=SimpleNamespace(broker_url="redis://redis:6379/0"),
    )


class FakeRedis:
    @classmethod
    def from_url(cls, *_: Any, **__: Any) -> FakeRedis:
        return cls()

    def llen(self, _queue: str) -> int:
        return 3

    def close(self) -> None: ...


def scraped(monkeypatch: pytest.MonkeyPatch) -> dict[str, set[str]]:
    """Each series name a scrape of a worker and of the API shows, with its labels: the
    counters and histograms of ``Metrics`` (each observed once), and the gauges the
    collectors read at scrape time (from stand-ins for the database and Redis)."""
    lag = SimpleNamespace(name="order_summary", lag_events=2, lag_seconds=1.5, stuck=False)
    monkeypatch.setattr(readmodels.maintenance, "status", lambda *_: [lag])
    monkeypatch.setattr(redis, "Redis", FakeRedis)
    registry = CollectorRegistry(auto_describe=False)
    metrics = Metrics(registry=registry)
    registry.register(ReadModelCollector(fake_services))
    registry.register(QueueCollector(fake_services, ("orders.commands",)))
    metrics.command("CreateOrder", "accepted", 0.01)
    metrics.end_to_end(0.1)
    metrics.conflict()
    metrics.db_retry()
    metrics.dead_letter("InvalidCommand: no")
    metrics.projection_events("order_summary", 3)
    metrics.request("/api/orders", "GET", 200, 0.01)

    series: dict[str, set[str]] = {}
    for family in registry.collect():
        for sample in family.samples:
            series.setdefault(sample.name, set()).update(sample.labels)
    return series


def test_the_scrape_shows_every_metric_the_code_says_it_exports(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    names = set(scraped(monkeypatch))

    for name in EXPORTED:
        family = {name, f"{name}_bucket"}  # a counter's own name; a histogram's buckets
        assert names & family, f"{name} is in EXPORTED but no scrape shows it"


def test_every_query_of_the_dashboard_names_metrics_the_code_exports(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    series = scraped(monkeypatch)
    found = set()
    for expr in queries():
        named = set(METRIC.findall(expr))
        assert named, f"a query names no metric of ours: {expr}"
        unknown = named - set(series)
        assert not unknown, f"{expr}: no scrape shows {sorted(unknown)}"
        labels = set().union(*(series[name] for name in named))
        for grouping in GROUPING.findall(expr):
            wanted = {label.strip() for label in grouping.split(",") if label.strip()}
            assert wanted <= labels, f"{expr}: its metrics have no label {wanted - labels}"
        found |= named
    assert found


def test_every_metric_name_asked_for_is_one_a_scrape_can_show() -> None:
    """The same without running the code: a counter as ``_total``, a histogram as
    ``_bucket``, ``_sum`` or ``_count``, a gauge by its name (``EXPORTED``'s names)."""
    allowed = set()
    for name in EXPORTED:
        allowed.add(name)
        if not name.endswith("_total"):
            allowed |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    for expr in queries():
        assert set(METRIC.findall(expr)) <= allowed, expr


def panel_about(*metrics: str, by: str | None = None) -> list[str]:
    """The queries naming every one of ``metrics`` (grouped ``by`` that label)."""
    return [
        expr
        for expr in queries()
        if all(re.search(rf"\b{metric}\b", expr) for metric in metrics)
        and (by is None or any(by in group for group in GROUPING.findall(expr)))
    ]


def test_the_dashboard_shows_what_an_operator_watches() -> None:
    assert panel_about("orders_commands_total", by="status"), "command rates by status"
    for histogram in ("orders_command_seconds", "orders_command_end_to_end_seconds"):
        percentiles = [
            expr for expr in panel_about(f"{histogram}_bucket") if "histogram_quantile" in expr
        ]
        assert len(percentiles) >= 2, f"latency percentiles of {histogram}"
    for lag in ("orders_projection_lag_events", "orders_projection_lag_seconds"):
        assert panel_about(lag, by="projection"), f"{lag} per projection"
    assert panel_about("orders_projection_stuck", by="projection"), "stuck read models"
    assert panel_about("orders_queue_depth", by="queue"), "queue depth"
    assert panel_about("orders_dead_letters_total"), "dead letters"


def test_every_panel_has_a_title_a_query_and_the_provisioned_datasource() -> None:
    uid = load_yaml(DATASOURCES)["datasources"][0]["uid"]
    ids = []
    for panel in panels():
        if panel.get("type") == "row":
            continue
        ids.append(panel["id"])
        assert panel.get("title")
        assert panel["targets"], panel["title"]
        assert panel["datasource"] == {"type": "prometheus", "uid": uid}, panel["title"]
        assert len({target["refId"] for target in panel["targets"]}) == len(panel["targets"])
    assert len(set(ids)) == len(ids)


# -- Prometheus and Grafana against the compose file ------------------------------------


def scrape_targets() -> dict[str, dict[int, str]]:
    """host -> port -> metrics path, from every scrape job."""
    targets: dict[str, dict[int, str]] = {}
    for job in load_yaml(PROMETHEUS)["scrape_configs"]:
        path = job.get("metrics_path", "/metrics")
        for static in job.get("static_configs", []):
            for target in static["targets"]:
                host, _, port = target.rpartition(":")
                targets.setdefault(host, {})[int(port)] = path
        for dns in job.get("dns_sd_configs", []):
            for host in dns["names"]:
                targets.setdefault(host, {})[int(dns["port"])] = path
    return targets


def exporting_services() -> dict[str, int]:
    """Each compose service that serves metrics, and its port: the workers on
    ORDERS_METRICS_PORT, the API on the port it listens on."""
    exporting = {}
    for name, service in services().items():
        env = service.get("environment", {})
        command = service.get("command", [])
        if "ORDERS_METRICS_PORT" in env:
            exporting[name] = int(env["ORDERS_METRICS_PORT"])
        elif command[:1] == ["serve"]:
            exporting[name] = int(command[command.index("--port") + 1])
    return exporting


def test_prometheus_scrapes_every_service_that_exports_metrics_on_its_port() -> None:
    targets = scrape_targets()
    exporting = exporting_services()

    assert set(exporting) == {"command-worker", "projection-worker", "api"}
    for name, port in exporting.items():
        assert targets.get(name, {}).get(port) == "/metrics", f"{name}:{port} is not scraped"


def test_prometheus_scrapes_nothing_the_compose_file_does_not_run() -> None:
    for host in set(scrape_targets()) - {"localhost"}:
        assert host in services(), f"prometheus scrapes {host}, which is not a service"


def test_prometheus_reads_the_file_compose_mounts() -> None:
    prometheus = services()["prometheus"]
    mounts = dict(volume.rsplit(":", 2)[:2] for volume in prometheus["volumes"] if ":ro" in volume)

    assert mounts["./monitoring/prometheus.yml"] == "/etc/prometheus/prometheus.yml"
    assert "--config.file=/etc/prometheus/prometheus.yml" in prometheus["command"]


def test_grafana_reads_the_prometheus_of_the_compose_file() -> None:
    (source,) = load_yaml(DATASOURCES)["datasources"]
    url = urlsplit(source["url"])
    prometheus = services()["prometheus"]

    assert source["type"] == "prometheus"
    assert url.hostname == "prometheus" and "prometheus" in services()
    published = {port.rsplit(":", 1)[1] for port in prometheus["ports"]}
    assert str(url.port) in published  # the port prometheus listens on, in its container
    assert not any(option.startswith("--web.listen-address") for option in prometheus["command"])


def test_grafana_finds_the_dashboards_where_compose_mounts_them() -> None:
    grafana = services()["grafana"]
    mounts = dict(volume.rsplit(":", 2)[:2] for volume in grafana["volumes"] if ":ro" in volume)
    (provider,) = load_yaml(PROVIDERS)["providers"]

    assert mounts["./monitoring/grafana/provisioning"] == "/etc/grafana/provisioning"
    assert mounts["./monitoring/grafana/dashboards"] == provider["options"]["path"]
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{provider['options']['path']}/{DASHBOARD.name}"
