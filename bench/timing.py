"""Timing one call many times: the medians and p99s every latency figure of the benchmark is.

Standard library and numpy only: the peers' own environments import it too
(``peers/client_latency.py``).
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np

__all__ = ["stats", "time_calls"]


def stats(seconds: list[float]) -> dict:
    a = np.asarray(seconds) * 1e3
    return {"median_ms": float(np.median(a)), "p99_ms": float(np.percentile(a, 99)), "count": int(a.size)}


def time_calls(fn: Callable[[], object], reps: int, warm: int = 5) -> dict:
    """``stats`` of ``reps`` calls of ``fn``, after ``warm`` untimed ones."""
    for _ in range(warm):
        fn()
    lat = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        lat.append(time.perf_counter() - t0)
    return stats(lat)
