"""Prometheus metrics: answers, requests, outbox depth and age, delivery failures."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    """One registry per app, so tests and several apps in a process stay apart."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Histogram(
            "seda_request_seconds",
            "HTTP request latency by route and status class",
            ["route", "status"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
        )
        self.inbound = Counter(
            "seda_inbound_total",
            "Inbound messages by channel and outcome",
            ["channel", "outcome"],
            registry=self.registry,
        )
        self._request_children: dict[tuple[str, int], Any] = {}
        self._outbox: dict[str, tuple[int, float]] = {}
        self._dead: dict[str, int] = {}
        self._sources: list[Callable[[], Iterable[Metric]]] = []
        self.registry.register(_Snapshot(self))

    def observe_request(self, route: str, status: int, seconds: float) -> None:
        """Record one request's latency (the labelled child is looked up once per pair)."""
        key = (route, status // 100)
        child = self._request_children.get(key)
        if child is None:
            child = self._request_children[key] = self.requests.labels(route, f"{key[1]}xx")
        child.observe(seconds)

    def add_source(self, source: Callable[[], Iterable[Metric]]) -> None:
        """Add a function that yields metric families at scrape time."""
        self._sources.append(source)

    def set_outbox(self, stats: Mapping[str, tuple[int, float]], dead: Mapping[str, int]) -> None:
        """Record the outbox depth and oldest age per backend (read just before a scrape)."""
        self._outbox = dict(stats)
        self._dead = dict(dead)

    def render(self) -> bytes:
        """The text exposition format."""
        data: bytes = generate_latest(self.registry)
        return data


class _Snapshot:
    def __init__(self, metrics: Metrics):
        self.metrics = metrics

    def collect(self) -> Iterable[Metric]:
        depth = GaugeMetricFamily(
            "seda_outbox_depth", "Events waiting for delivery", labels=["backend"]
        )
        age = GaugeMetricFamily(
            "seda_outbox_oldest_age_seconds",
            "Age of the oldest undelivered event",
            labels=["backend"],
        )
        for backend, (count, oldest) in self.metrics._outbox.items():
            depth.add_metric([backend], count)
            age.add_metric([backend], oldest)
        dead = GaugeMetricFamily(
            "seda_outbox_dead", "Events in the dead letter", labels=["backend"]
        )
        for backend, count in self.metrics._dead.items():
            dead.add_metric([backend], count)
        yield depth
        yield age
        yield dead
        for source in self.metrics._sources:
            yield from source()


def gauge_family(
    name: str, doc: str, labels: list[str], values: Mapping[tuple[str, ...], float]
) -> GaugeMetricFamily:
    """A gauge family built from a dict of label values to values."""
    return _filled(GaugeMetricFamily(name, doc, labels=labels), values)


def counter_family(
    name: str, doc: str, labels: list[str], values: Mapping[tuple[str, ...], float]
) -> CounterMetricFamily:
    """A counter family built from a dict of label values to counts."""
    return _filled(CounterMetricFamily(name, doc, labels=labels), values)


_Family = TypeVar("_Family", GaugeMetricFamily, CounterMetricFamily)


def _filled(family: _Family, values: Mapping[tuple[str, ...], float]) -> _Family:
    for key, value in values.items():
        family.add_metric(list(key), value)
    return family
