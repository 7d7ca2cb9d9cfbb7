"""What a numpy call costs a thread while other threads wait for the interpreter lock.

numpy lets go of the lock while it loops over more than a few hundred numbers. With another
thread waiting for the lock, letting go hands it over, and the caller pays for waking that thread
and for taking the lock back. Under load the service's event loop is such a caller (its compute
threads want the lock between their compiled calls), so it checks no large array itself: the
entries of a request and its results are checked on the compute thread (BENCHMARKS.md).

    python bench/lock_handover.py

Prints CPU time and wall time per call of each operation, alone and with two threads that
always want the lock (pure Python loops: the worst case), medians of 5 rounds.
"""

from __future__ import annotations

import statistics
import threading
import time

import numpy as np

CALLS, ROUNDS = 1000, 5
P = 4866  # the benchmark model's weights


def operations() -> dict:
    w, small = np.random.default_rng(0).normal(size=P), np.ones(400)
    return {
        f"np.isfinite(w).all(), w of {P}": lambda: np.isfinite(w).all(),
        f"w.copy(), w of {P}": w.copy,
        "np.isfinite(v).all(), v of 400 (numpy keeps the lock)": lambda: np.isfinite(small).all(),
        "sum(range(30)) (Python)": lambda: sum(range(30)),
    }


def per_call(fn) -> tuple[float, float]:
    """(CPU µs, wall µs) per call: medians over rounds."""
    cpu, wall = [], []
    for _ in range(ROUNDS):
        c0, t0 = time.thread_time(), time.perf_counter()
        for _ in range(CALLS):
            fn()
        cpu.append((time.thread_time() - c0) / CALLS * 1e6)
        wall.append((time.perf_counter() - t0) / CALLS * 1e6)
    return statistics.median(cpu), statistics.median(wall)


def main() -> None:
    ops = operations()
    alone = {name: per_call(fn) for name, fn in ops.items()}
    stop = threading.Event()

    def wants_the_lock():
        while not stop.is_set():
            for _ in range(50):
                pass

    threads = [threading.Thread(target=wants_the_lock, daemon=True) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.05)
        crowded = {name: per_call(fn) for name, fn in ops.items()}
    finally:
        stop.set()
        for t in threads:
            t.join()
    print("| operation | alone: CPU / wall µs | 2 threads waiting: CPU / wall µs | CPU × |")
    print("|---|---|---|---|")
    for name in ops:
        (c1, w1), (c2, w2) = alone[name], crowded[name]
        print(f"| {name} | {c1:.2f} / {w1:.2f} | {c2:.2f} / {w2:.2f} | {c2 / c1:.1f}× |")


if __name__ == "__main__":
    main()
