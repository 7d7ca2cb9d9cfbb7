"""Crash safety: a loop of weight updates is killed with SIGKILL at random moments, many times.

Each update stores weights that are all one value, a new value each time, so that a mix of two
versions would show as two values. After every restart the repository must load, every version
on disk must be whole, and the served weights must be exactly the last acknowledged update or
the one that was in flight when the process died: never a mix, never an older one.
``GRADSERVE_CRASH_KILLS`` sets the number of kills (default 20).
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time

import httpx
import numpy as np
import pytest

from gradserve.repository import ModelRepository
from hardening_kit import tiny_repository
from live import LiveServer

KILLS = int(os.environ.get("GRADSERVE_CRASH_KILLS", "20"))
P = 17  # weights of the tiny model


class Writer(threading.Thread):
    """PUTs uniform weight vectors 1, 2, 3, ... (continuing from ``start``) until the server dies;
    records what was acknowledged and what was in flight."""

    def __init__(self, url: str, start: float):
        super().__init__(daemon=True)
        self.url = url
        self.next_value = start
        self.acknowledged: list[tuple[float, int]] = []  # (value, version)
        self.in_flight: float | None = None

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=10) as http:
            while True:
                self.in_flight = self.next_value
                try:
                    r = http.put("/models/tiny/weights", json={"weights": [self.next_value] * P})
                except httpx.TransportError:
                    return  # killed: the update in flight may or may not have been stored
                assert r.status_code == 200, r.text
                self.acknowledged.append((self.next_value, r.json()["version"]))
                self.in_flight = None
                self.next_value += 1


def _check_disk(repo: ModelRepository) -> dict[int, float]:
    """Every version on disk reads whole and uniform: {version: its value}."""
    values = {}
    for version in repo.versions("tiny"):
        _, weights, _ = repo.read("tiny", version)
        assert np.unique(weights).size == 1, f"version {version} mixes {np.unique(weights)}"
        values[version] = float(weights[0])
    # later versions hold later values: no version was overwritten or renumbered
    assert list(values.values()) == sorted(values.values()), values
    return values


@pytest.mark.slow
def test_sigkill_during_weight_updates_never_loses_or_mixes_a_version(tmp_path):
    root = tiny_repository(tmp_path / "models", fill=0.0)
    repo = ModelRepository(root)
    server = LiveServer(root, env={"GRADSERVE_BUCKETS": "1", "GRADSERVE_KEEP_VERSIONS": "3"})
    rng = random.Random(os.environ.get("GRADSERVE_CRASH_SEED", "6"))
    last_value, last_version = 0.0, 1
    in_flight = None
    writes = mid_write = 0
    try:
        for kill in range(KILLS + 1):
            server.start(timeout=120)
            r = httpx.get(f"{server.url}/models/tiny/weights", timeout=10)
            served = np.array(r.json()["weights"]).ravel()
            version = r.json()["version"]
            assert np.unique(served).size == 1, f"kill {kill}: served weights mix {np.unique(served)}"
            value = float(served[0])
            allowed = {last_value: last_version}
            if in_flight is not None:
                allowed[in_flight] = last_version + 1
            assert value in allowed, f"kill {kill}: serves {value}; allowed {allowed}"
            assert version == allowed[value], f"kill {kill}: {value} as version {version}"
            on_disk = _check_disk(repo)
            assert max(on_disk) == version and on_disk[version] == value
            if kill == KILLS:
                break
            # Update until killed at a random moment.
            writer = Writer(server.url, start=value + 1)
            writer.start()
            time.sleep(rng.uniform(0.02, 0.5))
            server.stop(signal.SIGKILL)
            writer.join(30)
            assert not writer.is_alive()
            writes += len(writer.acknowledged)
            if writer.acknowledged:
                last_value, last_version = writer.acknowledged[-1]
            else:
                last_value, last_version = value, version
            in_flight = writer.in_flight
            mid_write += any(p.name.startswith(".tmp-") for p in (root / "tiny").iterdir())
    finally:
        server.stop()  # the last start is not followed by a kill
    print(f"\ncrash safety: {KILLS} SIGKILLs, {writes} acknowledged updates, "
          f"{mid_write} kills left a half-written temporary folder behind")
    assert writes > KILLS  # the loop did write between kills
