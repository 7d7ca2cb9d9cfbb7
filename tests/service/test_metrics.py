"""The service's own histograms are exposed exactly as prometheus_client's Histogram is, so a
dashboard or an alert cannot tell them apart."""

from __future__ import annotations

import re
import threading

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from gradserve.metrics import Metrics, _Histogram

BUCKETS = (1e-4, 2.5e-4, 1e-3, 0.5, 1, 5)
# On a bound, between bounds, below the first, beyond the last, zero, negative, integers.
VALUES = [1e-4, 2.5e-4, 3e-4, 5e-5, 0.5, 0.7, 1, 4.999, 5, 6, 1e9, 0, -2, 3]


def _text(registry: CollectorRegistry) -> str:
    # Creation times differ between the two: compare everything else.
    return re.sub(r"(_created\{[^}]*\}) \S+", r"\1 T", generate_latest(registry).decode())


def test_exposition_matches_prometheus_client():
    ours, theirs = CollectorRegistry(), CollectorRegistry()
    a = _Histogram("x_seconds", "How long", ["model", "method"], buckets=BUCKETS, registry=ours)
    b = Histogram("x_seconds", "How long", ["model", "method"], buckets=BUCKETS, registry=theirs)
    for i, value in enumerate(VALUES):
        labels = ("m", "gradient") if i % 3 else (1, "evaluate")  # labels become strings
        a.labels(*labels).observe(value)
        b.labels(*labels).observe(value)
    text = _text(ours)
    assert text == _text(theirs)
    assert 'x_seconds_bucket{le="1.0",method="gradient",model="m"} 5.0' in text
    assert ours.get_sample_value("x_seconds_count", {"model": "1", "method": "evaluate"}) == 5


def test_an_unobserved_child_and_a_wrong_label_count():
    registry = CollectorRegistry()
    h = _Histogram("y", "Rows", ["model"], buckets=(1, 8), registry=registry)
    h.labels("a")
    assert registry.get_sample_value("y_bucket", {"model": "a", "le": "+Inf"}) == 0
    assert registry.get_sample_value("y_sum", {"model": "a"}) == 0
    with pytest.raises(ValueError, match="takes labels"):
        h.labels("a", "b")


def test_observations_from_several_threads_are_all_counted():
    metrics = Metrics()
    child = metrics.queue_seconds.labels("m", "gradient")

    def observe():
        for _ in range(20000):
            child.observe(0.003)

    threads = [threading.Thread(target=observe) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    get = metrics.registry.get_sample_value
    labels = {"model": "m", "method": "gradient"}
    assert get("gradserve_queue_seconds_count", labels) == 80000
    assert get("gradserve_queue_seconds_sum", labels) == pytest.approx(240.0)
