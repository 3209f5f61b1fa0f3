"""Prometheus metrics on a per-server registry (never the global one)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class _StatsCollector(Collector):
    def __init__(self, read: Callable[[], dict[str, Any]]) -> None:
        self._read = read

    def collect(self) -> Iterable[GaugeMetricFamily]:
        stats = self._read()
        objects = GaugeMetricFamily("thinsync_objects", "Live configuration objects per kind", labels=["kind"])
        for kind, count in sorted(stats["objects"].items()):
            objects.add_metric([kind], count)
        yield objects
        yield GaugeMetricFamily("thinsync_change_log_entries", "Change sets in the change log", value=stats["changes"])


class _GaugeCollector(Collector):
    def __init__(
        self, name: str, doc: str, labels: list[str], read: Callable[[], list[tuple[list[str], float]]]
    ) -> None:
        self._name, self._doc, self._labels, self._read = name, doc, labels, read

    def collect(self) -> Iterable[GaugeMetricFamily]:
        family = GaugeMetricFamily(self._name, self._doc, labels=self._labels)
        for labels, value in self._read():
            family.add_metric(labels, value)
        yield family


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.http_requests = Counter(
            "thinsync_http_requests", "HTTP requests by method and status", ["method", "status"], registry=self.registry
        )
        self.http_seconds = Histogram(
            "thinsync_http_request_seconds", "HTTP request latency", buckets=LATENCY_BUCKETS, registry=self.registry
        )
        self.changes = Counter(
            "thinsync_changes_committed", "Change sets committed by this server's write path", registry=self.registry
        )
        self.logins = Counter("thinsync_logins", "Log-in attempts by outcome", ["outcome"], registry=self.registry)

    def add_stats(self, read: Callable[[], dict[str, Any]]) -> None:
        """Expose store counts, read at scrape time."""
        self.registry.register(_StatsCollector(read))

    def add_gauges(
        self, name: str, doc: str, labels: list[str], read: Callable[[], list[tuple[list[str], float]]]
    ) -> None:
        """A gauge family whose samples `read` returns at scrape time."""
        self.registry.register(_GaugeCollector(name, doc, labels, read))

    def render(self) -> bytes:
        return generate_latest(self.registry)
