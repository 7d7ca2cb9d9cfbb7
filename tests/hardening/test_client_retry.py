"""The client under load shedding, against a stub transport: a 503 with Retry-After is sent
again after that many seconds (capped), only for idempotent calls, a bounded number of times."""

from __future__ import annotations

import asyncio
import json

import httpx
import numpy as np
import pytest

import gradserve_client as gc
from gradserve_client import _async, _client

X = np.ones((2, 3))


def _shedding(busy: int, retry_after: str | None = "2", status: int = 503):
    """A transport answering ``status`` to the first ``busy`` requests, then a good answer."""
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if len(seen) <= busy:
            headers = {"Retry-After": retry_after} if retry_after else {}
            return httpx.Response(status, headers=headers, json={"error": {
                "type": "Unavailable" if status == 503 else "DeadlineExceeded",
                "message": "the compute queue is full"}})
        if request.method == "PUT":
            return httpx.Response(200, json={"status": 0, "version": 2})
        return httpx.Response(200, json={"y": [[1.0], [2.0]]})

    return handle, seen


@pytest.fixture()
def sleeps(monkeypatch):
    """Record the client's waits instead of waiting."""
    waited: list[float] = []
    monkeypatch.setattr(_client.time, "sleep", waited.append)

    async def asleep(seconds):
        waited.append(seconds)

    monkeypatch.setattr(_async.asyncio, "sleep", asleep)
    return waited


def test_503_is_retried_after_the_servers_retry_after(sleeps):
    handle, seen = _shedding(busy=2, retry_after="2")
    with gc.Client("http://stub", api_key="k", transport=httpx.MockTransport(handle), retries=3,
                   encoding="json") as client:
        y = client.model("m").evaluate(X)
    assert y.tolist() == [[1.0], [2.0]]
    assert len(seen) == 3 and sleeps == [2.0, 2.0]
    # the same request each time, with the key as a bearer token
    assert {r.content for r in seen} == {seen[0].content}
    assert all(r.headers["authorization"] == "Bearer k" for r in seen)
    assert json.loads(seen[0].content) == {"x": X.tolist()}


def test_async_client_honours_retry_after_too(sleeps):
    handle, seen = _shedding(busy=1, retry_after="1")

    async def run():
        async with gc.AsyncClient("http://stub", transport=httpx.MockTransport(handle),
                                  encoding="json") as client:
            return await client.model().evaluate(X)

    assert asyncio.run(run()).shape == (2, 1)
    assert len(seen) == 2 and sleeps == [1.0]


def test_retry_after_is_capped_and_backoff_used_without_it(sleeps):
    handle, _ = _shedding(busy=2, retry_after="3600")
    with gc.Client("http://stub", transport=httpx.MockTransport(handle), encoding="json") as client:
        client.model().evaluate(X)
    assert sleeps == [5.0, 5.0]  # a server asking for an hour does not stall a job that long
    sleeps.clear()
    handle, _ = _shedding(busy=2, retry_after=None)
    with gc.Client("http://stub", transport=httpx.MockTransport(handle), encoding="json") as client:
        client.model().evaluate(X)
    assert len(sleeps) == 2 and 0 < sleeps[0] < sleeps[1] * 2 and max(sleeps) < 1


def test_gives_up_after_its_retries_with_the_servers_advice(sleeps):
    handle, seen = _shedding(busy=100, retry_after="1")
    with gc.Client("http://stub", transport=httpx.MockTransport(handle), retries=2,
                   encoding="json") as client:
        with pytest.raises(gc.Unavailable) as info:
            client.model().evaluate(X)
    assert len(seen) == 3 and info.value.status == 503 and info.value.retry_after == 1.0
    assert "queue is full" in info.value.message


def test_weight_updates_are_not_resent(sleeps):
    handle, seen = _shedding(busy=1)
    with gc.Client("http://stub", transport=httpx.MockTransport(handle), encoding="json") as client:
        with pytest.raises(gc.Unavailable):
            client.model().set_weights(np.ones((3, 1)))
    assert len(seen) == 1 and sleeps == []


def test_a_server_timeout_is_not_retried(sleeps):
    handle, seen = _shedding(busy=1, status=504)
    with gc.Client("http://stub", transport=httpx.MockTransport(handle), encoding="json") as client:
        with pytest.raises(gc.DeadlineExceeded) as info:
            client.model().evaluate(X)
    assert len(seen) == 1 and isinstance(info.value, gc.ServerError)
