"""The compute lane sends a request to the route the router would have chosen, and everything
it does not take to the router, untouched; an error nobody expected gets the same typed 500 on
both ways."""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest
from starlette.routing import Match

import gradserve
from gradserve.http import create_app, routes
from gradserve.http.compute import ComputeLane, ComputeRoute
from gradserve.settings import Settings
from factories import random_inputs, random_model

COMPUTE = [r for r in routes.router.routes if isinstance(r, ComputeRoute)]


def _scope(method: str, path: str, root_path: str = "") -> dict:
    return {"type": "http", "method": method, "path": path, "root_path": root_path,
            "headers": [], "query_string": b""}


def _router_choice(scope: dict):
    """The first route of the table that fully matches, as Starlette's router picks."""
    for route in routes.router.routes:
        match, child = route.matches(scope)
        if match is Match.FULL:
            return route, child.get("path_params", {})
    return None, None


class Taken(Exception):
    pass


def _lane_choice(scope: dict):
    """(route, path params) the lane hands the request to, or (None, None) if it passes it on."""
    async def downstream(scope, receive, send):
        raise Taken

    lane = ComputeLane(downstream, routes.router.routes)
    seen = {}

    async def handle(self, scope, receive, send):
        seen["route"], seen["params"] = self, scope["path_params"]

    original = ComputeRoute.handle
    ComputeRoute.handle = handle
    try:
        asyncio.run(lane(scope, None, None))
    except Taken:
        return None, None
    finally:
        ComputeRoute.handle = original
    assert scope["route"] is seen["route"]  # what the metrics label by
    return seen["route"], seen["params"]


def test_every_compute_route_has_a_lane():
    lane = ComputeLane(None, routes.router.routes)
    assert len(COMPUTE) == 10
    assert set(lane.named) == set(lane.default) == {
        "evaluate", "forward_derivative", "gradient", "hessian_vector", "jacobian"}


@pytest.mark.parametrize("path", [f"/models/borehole/{m}" for m in
                                  ("evaluate", "forward_derivative", "gradient", "hessian_vector",
                                   "jacobian")]
                         + ["/evaluate", "/gradient", "/jacobian", "/models/a%20b/gradient",
                            "/models/models/evaluate"])
def test_the_lane_takes_a_post_where_the_router_would_send_it(path):
    scope = _scope("POST", path)
    expected = _router_choice(dict(scope))
    assert expected[0] is not None and isinstance(expected[0], ComputeRoute)
    assert _lane_choice(scope) == expected


@pytest.mark.parametrize("method, path", [
    ("GET", "/models/borehole/gradient"),   # 405 comes from the router
    ("PUT", "/evaluate"),
    ("POST", "/models//gradient"),          # no name: the router's 404
    ("POST", "/models/borehole/gradient/"),  # trailing slash: the router's redirect
    ("POST", "/models/borehole/weights"),
    ("POST", "/models/borehole/versions/3/restore"),
    ("POST", "/models/borehole/unknown"),
    ("POST", "/Gradient"),                  # UM-Bridge
    ("POST", "/v2/models/borehole/infer"),
    ("POST", "/nope/borehole/gradient"),
])
def test_anything_else_goes_on_to_the_router(method, path):
    assert _lane_choice(_scope(method, path)) == (None, None)


def test_a_root_path_is_taken_off_as_the_router_does():
    scope = _scope("POST", "/api/models/borehole/gradient", root_path="/api")
    route, params = _lane_choice(scope)
    assert route.path == "/models/{name}/gradient" and params == {"name": "borehole"}


def test_an_unexpected_error_is_a_typed_500_on_the_lane_and_off_it(tmp_path, monkeypatch, caplog):
    """The lane is in front of the framework's error pages (``app._FrontedAPI``): it answers a
    bug of ours as they do, logs it, and the service keeps serving."""
    repo = gradserve.ModelRepository(tmp_path / "models")
    base = random_model(5, m=2, k=1)
    repo.write("net", base.spec, base.get_weights())
    app = create_app(Settings(models=repo.root, buckets=(1,), direction_buckets=(2,)))
    plane = app.state.dataplane
    plane.load()
    x = random_inputs(base, 1).tolist()

    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug")

    async def run(path: str, method: str = "POST", **kwargs):
        # Not raising the app's exception: what reaches the client is what is under test.
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            return await client.request(method, path, **kwargs)

    try:
        with monkeypatch.context() as patch, caplog.at_level(logging.ERROR, "gradserve"):
            patch.setattr(type(plane), "evaluate", broken)
            patch.setattr(type(plane), "get_weights", broken)
            on_lane = asyncio.run(run("/models/net/evaluate", json={"x": x}))
            off_lane = asyncio.run(run("/models/net/weights", "GET"))
        for answer in (on_lane, off_lane):
            assert answer.status_code == 500
            assert answer.json()["error"]["type"] == "InternalError"
            assert "ZeroDivisionError" in answer.json()["error"]["message"]
        logged = [r for r in caplog.records if r.exc_info and r.exc_info[0] is ZeroDivisionError]
        assert {r.getMessage() for r in logged} == {
            "POST /models/net/evaluate: unexpected error", "GET /models/net/weights: unexpected error"}
        again = asyncio.run(run("/models/net/evaluate", json={"x": x}))
        assert again.status_code == 200 and len(again.json()["y"]) == 1
    finally:
        plane.close()
