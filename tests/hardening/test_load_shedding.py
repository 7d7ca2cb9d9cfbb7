"""A full compute queue answers 503 with Retry-After at once, and the service keeps serving."""

from __future__ import annotations

import asyncio

import httpx
import numpy as np
import pytest

from live import LiveServer, copy_demo_repository


@pytest.fixture(scope="module")
def tight_server(tmp_path_factory):
    repo = copy_demo_repository(tmp_path_factory.mktemp("shed") / "models")
    server = LiveServer(repo, env={"GRADSERVE_QUEUE_SIZE": "1", "GRADSERVE_COMPUTE_THREADS": "1"})
    server.start()
    yield server
    server.stop()


def test_overload_is_shed_with_retry_after(tight_server):
    x = np.random.default_rng(0).uniform([0.05, 100, 63070, 990, 63.1, 700, 1120, 9855],
                                         [0.15, 50000, 115600, 1110, 116, 820, 1680, 12045],
                                         size=(4096, 8))
    body = {"x": x.tolist(), "py": np.ones((4096, 1)).tolist()}

    async def burst():
        async with httpx.AsyncClient(base_url=tight_server.url, timeout=60) as http:
            return await asyncio.gather(*[http.post("/models/borehole/gradient", json=body)
                                          for _ in range(12)])

    answers = asyncio.run(burst())
    codes = sorted(r.status_code for r in answers)
    assert set(codes) <= {200, 503} and 200 in codes and 503 in codes, codes
    for r in answers:
        if r.status_code == 503:
            assert r.headers["retry-after"] == "1"
            assert r.json()["error"]["type"] == "Unavailable"
            assert "GRADSERVE_QUEUE_SIZE" in r.json()["error"]["message"]
    after = httpx.post(f"{tight_server.url}/models/borehole/gradient", json={"x": x[:2].tolist(), "py": [[1.0], [1.0]]})
    assert after.status_code == 200
    assert "gradserve_shed_requests_total" in httpx.get(f"{tight_server.url}/metrics").text
