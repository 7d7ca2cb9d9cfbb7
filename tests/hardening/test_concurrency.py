"""Concurrent writers with If-Match: no update is ever lost.

Several threads each read the weights and their ETag, add one to every weight, and store the
result with ``If-Match`` on that ETag, retrying on 412. If an update were lost (two writers
both accepted from the same base), the weights would end below the number of accepted writes.
Bounded: ``GRADSERVE_WRITE_ATTEMPTS`` attempts in all (default 3000) or 60 s, whichever first.
"""

from __future__ import annotations

import os
import threading
import time

import httpx
import numpy as np
import pytest

from gradserve.repository import ModelRepository
from hardening_kit import tiny_repository
from live import LiveServer

ATTEMPTS = int(os.environ.get("GRADSERVE_WRITE_ATTEMPTS", "3000"))
WRITERS = 8
SECONDS = 60.0


@pytest.mark.slow
def test_if_match_loses_no_update(tmp_path):
    root = tiny_repository(tmp_path / "models", fill=0.0)
    stats = {"attempts": 0, "stored": 0, "conflicts": 0}
    lock = threading.Lock()
    deadline = time.monotonic() + SECONDS
    errors: list[str] = []

    def writer(url: str) -> None:
        with httpx.Client(base_url=url, timeout=30) as http:
            while time.monotonic() < deadline:
                with lock:
                    if stats["attempts"] >= ATTEMPTS:
                        return
                    stats["attempts"] += 1
                r = http.get("/models/tiny/weights")
                weights = np.array(r.json()["weights"])
                r = http.put("/models/tiny/weights", json={"weights": (weights + 1).tolist()},
                             headers={"If-Match": r.headers["etag"]})
                with lock:
                    if r.status_code == 200:
                        stats["stored"] += 1
                    elif r.status_code == 412 and r.json()["error"]["type"] == "WeightsConflict":
                        stats["conflicts"] += 1
                    else:
                        errors.append(f"{r.status_code} {r.text}")
                        return

    with LiveServer(root, env={"GRADSERVE_BUCKETS": "1", "GRADSERVE_KEEP_VERSIONS": "5",
                               "GRADSERVE_COMPUTE_THREADS": "4"}) as server:
        threads = [threading.Thread(target=writer, args=(server.url,)) for _ in range(WRITERS)]
        start = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join(SECONDS + 30)
        elapsed = time.monotonic() - start
        r = httpx.get(f"{server.url}/models/tiny/weights")
    assert not errors, errors[:3]
    served = np.array(r.json()["weights"]).ravel()
    print(f"\nIf-Match writers: {stats['attempts']} attempts by {WRITERS} writers in {elapsed:.1f} s, "
          f"{stats['stored']} stored, {stats['conflicts']} refused with 412")
    assert stats["stored"] + stats["conflicts"] == stats["attempts"]
    assert stats["stored"] > 0 and stats["conflicts"] > 0  # there was contention
    np.testing.assert_array_equal(served, np.full(17, float(stats["stored"])))
    assert r.headers["etag"] == f'"{1 + stats["stored"]}"'
    repo = ModelRepository(root)
    assert repo.versions("tiny")[-1] == 1 + stats["stored"] and len(repo.versions("tiny")) == 5
    np.testing.assert_array_equal(repo.read("tiny")[1], served)
