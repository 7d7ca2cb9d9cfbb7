"""Prometheus metrics of one service instance (its own registry: no process-global state)."""

from __future__ import annotations

import bisect
import itertools
import math
import threading
import time

from prometheus_client import (CollectorRegistry, Counter, Gauge, ProcessCollector,
                               generate_latest)
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.utils import floatToGoString

__all__ = ["Metrics", "CONTENT_TYPE_LATEST"]

_LATENCY_BUCKETS = (1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 0.5, 1, 2.5, 5)
_ROW_BUCKETS = (1, 8, 64, 512, 4096, 32768, 262144)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
_QUEUE_BUCKETS = (1e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 0.1, 0.5, 2.5)


class Metrics:
    """The service's counters, histograms and gauges, in a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._compute_children: dict[tuple[str, str], tuple] = {}
        self._request_children: dict[tuple[str, int], tuple] = {}
        self.requests = Counter(
            "gradserve_http_requests", "HTTP requests answered, by route and status code",
            ["route", "status"], registry=self.registry)
        self.request_seconds = _Histogram(
            "gradserve_http_request_seconds", "Time from request to answer", ["route"],
            buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.compute_seconds = _Histogram(
            "gradserve_compute_seconds", "Time in compiled model calls, queueing included",
            ["model", "method"], buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.rows = _Histogram(
            "gradserve_rows", "Rows (samples) per call", ["model", "method"],
            buckets=_ROW_BUCKETS, registry=self.registry)
        self.batch_size = _Histogram(
            "gradserve_batch_size", "Requests merged into one batch", ["model", "method"],
            buckets=_BATCH_BUCKETS, registry=self.registry)
        self.queue_seconds = _Histogram(
            "gradserve_queue_seconds", "Time a compute request waited for its batch to start",
            ["model", "method"], buckets=_QUEUE_BUCKETS, registry=self.registry)
        self.inline = Counter(
            "gradserve_inline_requests", "Quick compute requests of a lone caller run at once on "
            "the event loop thread, without a batch", ["model", "method"], registry=self.registry)
        self.queue_depth = Gauge(
            "gradserve_queue_depth", "Compute requests waiting for a compute thread",
            registry=self.registry)
        # Counted by the HTTP front end as requests begin and end; the batcher reads it to tell a
        # lone caller from one whose neighbours are still sending or decoding their bodies.
        self.in_progress = 0
        self.requests_in_progress = Gauge(
            "gradserve_http_requests_in_progress", "HTTP requests being served now",
            registry=self.registry)
        self.requests_in_progress.set_function(lambda: self.in_progress)
        self.shed = Counter(
            "gradserve_shed_requests", "Compute requests answered 503 because the queue was full",
            ["model", "method"], registry=self.registry)
        self.weight_updates = Counter(
            "gradserve_weight_updates", "Weight versions stored", ["model"], registry=self.registry)
        self.repository_refreshes = Counter(
            "gradserve_repository_refreshes",
            "Versions written by other processes and picked up from the repository, by outcome "
            "(weights, model, skipped)", ["model", "outcome"], registry=self.registry)
        self.compiled_functions = Gauge(
            "gradserve_compiled_functions", "Kernels traced and compiled since start; flat after "
            "warm-up (a rise means a request escaped the compiled batch sizes)", ["model"],
            registry=self.registry)
        self.weights_version = Gauge(
            "gradserve_weights_version", "Version of the weights being served", ["model"],
            registry=self.registry)
        # Resident memory, CPU time, open files: what a soak watches for leaks.
        ProcessCollector(registry=self.registry)

    def track_model(self, model) -> None:
        """Read the model's trace count and served version at each scrape (no bookkeeping)."""
        self.compiled_functions.labels(model.name).set_function(lambda: model.trace_count)
        self.weights_version.labels(model.name).set_function(lambda: model.version)

    def observe_compute(self, model: str, method: str, rows: int, seconds: float) -> None:
        key = (model, method)
        children = self._compute_children.get(key)
        if children is None:  # a labelled child looked up once, not on every request
            children = (self.compute_seconds.labels(model, method), self.rows.labels(model, method))
            self._compute_children[key] = children
        children[0].observe(seconds)
        children[1].observe(rows)

    def observe_request(self, route: str, status: int, seconds: float) -> None:
        key = (route, status)
        children = self._request_children.get(key)
        if children is None:
            children = (self.requests.labels(route, str(status)), self.request_seconds.labels(route))
            self._request_children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _Histogram:
    """A labelled histogram, exposed exactly as prometheus_client's ``Histogram`` is (buckets,
    count, sum, created), at less than half its cost per observation: one bisection and one
    lock, where the library's takes a lock for the sum and another for the bucket after
    walking the buckets in Python. Four are observed per compute request, on the event loop,
    which is what limits a batching service's requests/s (BENCHMARKS.md). Only what the
    service uses: ``labels(...).observe(value)``."""

    def __init__(self, name: str, documentation: str, labelnames: list[str], *,
                 buckets: tuple[float, ...], registry: CollectorRegistry):
        self.name, self.documentation, self.labelnames = name, documentation, tuple(labelnames)
        self.bounds = tuple(float(b) for b in buckets) + (math.inf,)
        self.lock = threading.Lock()  # one for all children: observations are short
        self.children: dict[tuple[str, ...], _HistogramChild] = {}
        registry.register(self)

    def labels(self, *values) -> "_HistogramChild":
        key = tuple(str(v) for v in values)
        if len(key) != len(self.labelnames):
            raise ValueError(f"{self.name} takes labels {self.labelnames}, got {values}")
        with self.lock:
            child = self.children.get(key)
            if child is None:
                child = self.children[key] = _HistogramChild(self.bounds, self.lock)
        return child

    def describe(self) -> list[HistogramMetricFamily]:
        return [HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)]

    def collect(self) -> list[HistogramMetricFamily]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        with self.lock:
            rows = [(key, list(c.counts), c.sum, c.created) for key, c in self.children.items()]
        for key, counts, total, created in rows:
            buckets = [(floatToGoString(bound), n)
                       for bound, n in zip(self.bounds, itertools.accumulate(counts))]
            family.add_metric(key, buckets, total)
            family.add_sample(f"{self.name}_created", dict(zip(self.labelnames, key)), created)
        return [family]


class _HistogramChild:
    __slots__ = ("bounds", "lock", "counts", "sum", "created")

    def __init__(self, bounds: tuple[float, ...], lock: threading.Lock):
        self.bounds, self.lock = bounds, lock
        self.counts = [0] * len(bounds)  # per bucket, not cumulative: (previous bound, bound]
        self.sum = 0.0
        self.created = time.time()

    def observe(self, value: float) -> None:
        i = bisect.bisect_left(self.bounds, value)  # the first bound >= value, as ``le`` means
        with self.lock:
            self.counts[i] += 1
            self.sum += value
