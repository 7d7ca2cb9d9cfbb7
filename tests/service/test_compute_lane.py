"""The compute lane sends a request to the route the router would have chosen, and everything
it does not take to the router, untouched."""

from __future__ import annotations

import asyncio

import pytest
from starlette.routing import Match

from gradserve.http import routes
from gradserve.http.compute import ComputeLane, ComputeRoute

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
