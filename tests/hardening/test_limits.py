"""Limits: body size, rows, answer size and the per-request time limit, each answered with its
status and the typed error body, and the service serving on afterwards."""

from __future__ import annotations

import asyncio

import httpx
import numpy as np
import pytest

from gradserve.settings import Settings
from hardening_kit import InProcess, tiny_repository


@pytest.fixture()
def make_app(tmp_path):
    """Build and load an app on the tiny model with some settings; closed afterwards."""
    apps = []

    def make(**settings):
        repo = tiny_repository(tmp_path / f"models{len(apps)}")
        apps.append(InProcess(Settings(models=repo, buckets=(1, 8), **settings)))
        return apps[-1]

    yield make
    for app in apps:
        app.close()


def _call(app: InProcess, method, path, **kwargs) -> httpx.Response:
    return app.request(method, path, **kwargs)


def _error(response: httpx.Response, status: int, type_: str) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert error["type"] == type_
    return error["message"]


def test_answer_size_limit(make_app):
    app = make_app(max_answer_elements=40)
    ok = _call(app, "POST", "/evaluate", json={"x": np.zeros((40, 2)).tolist()})
    assert ok.status_code == 200
    message = _error(_call(app, "POST", "/evaluate", json={"x": np.zeros((41, 2)).tolist()}),
                     413, "PayloadTooLarge")
    assert "41 numbers; the limit is 40 (GRADSERVE_MAX_ANSWER_ELEMENTS)" in message
    assert "at most 40 rows" in message
    # gradient answers p + n*m numbers: 17 + 2n
    body = {"x": np.zeros((12, 2)).tolist(), "py": np.ones((12, 1)).tolist()}
    message = _error(_call(app, "POST", "/gradient", json=body), 413, "PayloadTooLarge")
    assert "41 numbers" in message and "at most 11 rows" in message
    app = make_app(max_answer_elements=16)
    message = _error(_call(app, "GET", "/weights"), 413, "PayloadTooLarge")
    assert "the weights would hold 17 numbers" in message


def test_row_and_body_limits(make_app):
    app = make_app(max_rows=10, max_body_bytes=2048)
    message = _error(_call(app, "POST", "/evaluate", json={"x": np.zeros((11, 2)).tolist()}),
                     413, "PayloadTooLarge")
    assert "11 rows; at most 10" in message and "GRADSERVE_MAX_ROWS" in message
    big = {"x": np.full((100, 2), 0.123456789).tolist()}
    assert "GRADSERVE_MAX_BODY_BYTES" in _error(_call(app, "POST", "/evaluate", json=big),
                                                413, "PayloadTooLarge")
    assert _call(app, "POST", "/evaluate", json={"x": [[0.0, 0.0]]}).status_code == 200


def test_work_past_the_time_limit_is_a_504_with_the_error_body(make_app):
    app = make_app(request_timeout=0.3)
    plane = app.plane

    async def stuck(*args, **kwargs):
        await asyncio.sleep(30)

    plane.evaluate = stuck  # stands for a call stuck behind a long queue
    message = _error(_call(app, "POST", "/evaluate", json={"x": [[0.0, 0.0]]}), 504,
                     "DeadlineExceeded")
    assert "within 0.3 s (GRADSERVE_REQUEST_TIMEOUT)" in message
    assert _call(app, "POST", "/gradient", json={"x": [[0.0, 0.0]], "py": [[1.0]]}).status_code == 200
    metrics = _call(app, "GET", "/metrics").text
    assert 'gradserve_http_requests_total{route="/evaluate",status="504"} 1.0' in metrics


def test_each_request_is_held_to_its_own_deadline(make_app):
    """One timer watches every running request: requests that start after an earlier one has
    finished, two of them at once, each get their 504; a request cancelled by someone else is
    left cancelled, not answered."""
    app = make_app(request_timeout=0.3)

    async def stuck(*args, **kwargs):
        await asyncio.sleep(30)

    async def run():
        async with httpx.AsyncClient(transport=app.transport(), base_url="http://app") as c:
            quick = await c.post("/gradient", json={"x": [[0.0, 0.0]], "py": [[1.0]]})
            app.plane.evaluate = stuck
            await asyncio.sleep(0.1)  # the first deadline, still ahead, is no longer anyone's
            late = await asyncio.gather(*(c.post("/evaluate", json={"x": [[0.0, 0.0]]})
                                          for _ in range(2)))
            gone = asyncio.ensure_future(c.post("/evaluate", json={"x": [[0.0, 0.0]]}))
            await asyncio.sleep(0.05)
            gone.cancel()
            with pytest.raises(asyncio.CancelledError):
                await gone
            await asyncio.sleep(0.4)  # past its deadline: nothing is left to cancel
            after = await c.post("/gradient", json={"x": [[0.0, 0.0]], "py": [[1.0]]})
            return quick, late, after

    quick, late, after = asyncio.run(run())
    assert quick.status_code == 200 and after.status_code == 200
    for response in late:
        assert "within 0.3 s" in _error(response, 504, "DeadlineExceeded")


def test_a_body_that_does_not_arrive_is_a_408(make_app):
    app = make_app(request_timeout=0.3)

    async def dribble():
        yield b'{"x": [[0.0, '
        await asyncio.sleep(30)
        yield b"0.0]]}"

    response = _call(app, "POST", "/evaluate", content=dribble(),
                     headers={"Content-Type": "application/json"})
    assert "body did not arrive within 0.3 s" in _error(response, 408, "BodyTimeout")


def test_weight_update_past_the_time_limit_says_it_may_be_stored(make_app):
    app = make_app(request_timeout=0.3)
    plane = app.plane
    weights = _call(app, "GET", "/weights").json()["weights"]

    async def slow(*args, **kwargs):
        await asyncio.sleep(30)

    plane.set_weights = slow
    message = _error(_call(app, "PUT", "/weights", json={"weights": weights}), 504,
                     "DeadlineExceeded")
    assert "may still be stored" in message
