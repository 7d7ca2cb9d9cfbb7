"""The compute routes, served as plain ASGI.

``POST .../evaluate``, ``/forward_derivative``, ``/gradient``, ``/jacobian`` and
``/hessian_vector`` are what an optimisation loop calls thousands of times, so each request's
overhead is the product. They are declared like every other route (path, API-key scope, OpenAPI
description: FastAPI reads all of it from the declaration), but a ``ComputeRoute`` serves its
requests itself: it takes the headers and the body straight from ASGI, checks the key, decodes,
calls the data plane and sends the answer in two ASGI messages. What it skips is FastAPI's
dependency solving and its Request and Response objects: about 200 µs of CPU per request on a
2-core machine (BENCHMARKS.md), more than the compiled call of a small batch. A ``ComputeLane``
also spares these requests the router's search through every route.

Behaviour is that of the other routes: the same checks in the same order (key, model, body size,
body, arguments), domain errors answered by ``errors.domain_response``, any other exception by
``errors.unexpected_response`` (the app's last-resort answer), a method the route lacks answered
405 by FastAPI.
"""

from __future__ import annotations

from typing import Awaitable, Callable
from urllib.parse import parse_qsl

from fastapi.routing import APIRoute
from starlette._utils import get_route_path
from starlette.types import ASGIApp, Receive, Scope, Send

from ..dataplane import DataPlane
from ..errors import GradserveError, InvalidInput
from ..wire import decode_body, encode_answer, wants_binary
from . import schemas
from .deps import receive_body
from .errors import domain_response, unexpected_response
from .security import bearer_key, scope_of

__all__ = ["ComputeLane", "ComputeRoute", "Compute"]

# (data plane, model name or None, decoded body fields, query parameters, caller) -> answer arrays
Compute = Callable[[DataPlane, "str | None", dict, dict, object], Awaitable[dict]]


class ComputeRoute(APIRoute):
    """An ``APIRoute`` whose requests ``compute`` answers (``kind``: its body, as in
    ``schemas.REQUESTS``). FastAPI reads the endpoint's signature and the route's dependencies
    for the OpenAPI document and the route table only; ``handle`` serves every request."""

    def __init__(self, path: str, endpoint: Callable, *, kind: str, compute: Compute, **kwargs):
        super().__init__(path, endpoint, **kwargs)
        fields, required = schemas.REQUESTS[kind]
        self.fields = {name: name in required for name in fields}
        self.compute = compute
        self.scope = scope_of(self)  # the key scope its declared dependency requires
        # The query parameters its OpenAPI declaration names; any other is refused, as an unknown
        # body field is, so that a misspelt one is not silently ignored.
        self.query_names = frozenset(p["name"] for p in (self.openapi_extra or {}).get(
            "parameters", []) if p.get("in") == "query")

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] not in self.methods:
            await super().handle(scope, receive, send)  # FastAPI's 405, as for every route
            return
        plane: DataPlane = scope["app"].state.dataplane
        headers = _headers(scope)
        try:
            if self.scope is not None:
                plane.keys.authorize(bearer_key(_text(headers.get(b"authorization"))), self.scope)
            name = scope["path_params"].get("name")
            plane.model(name)  # an unknown model is a 404 whatever the body holds
            with plane.batcher.arrival():  # partial batches wait for it: ``gradserve.batching``
                body = await receive_body(receive, _text(headers.get(b"content-length")),
                                          plane.settings.max_body_bytes)
                if body is None:
                    return  # the client left: nobody to answer
                args = decode_body(body, _text(headers.get(b"content-type")), self.fields)
                query = self._query(scope["query_string"])
            values = await self.compute(plane, name, args, query, scope.get("client"))
            answer, media = encode_answer(values, wants_binary(_text(headers.get(b"accept"))))
        except GradserveError as exc:
            await domain_response(exc, scope["method"], scope["path"])(scope, receive, send)
            return
        except Exception as exc:
            # The framework's error pages are behind the lane, not around it (``ComputeLane``):
            # answer as they would, then raise for the server to log and close the connection.
            await unexpected_response(exc, scope["method"], scope["path"])(scope, receive, send)
            raise
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", media.encode()), (b"content-length", str(len(answer)).encode())]})
        await send({"type": "http.response.body", "body": answer})

    def _query(self, raw: bytes) -> dict:
        """The query parameters, each one a known one (InvalidInput otherwise)."""
        if not raw:  # nearly every call: no parsing for nothing
            return {}
        query = dict(parse_qsl(raw.decode("latin-1"), keep_blank_values=True))
        unknown = sorted(set(query) - self.query_names)
        if unknown:
            takes = (f"it takes {', '.join(sorted(self.query_names))}" if self.query_names
                     else "it takes none")
            raise InvalidInput(f"unknown query parameter {unknown[0]!r} for {self.path}; {takes}")
        return query


class ComputeLane:
    """Hands a POST to a compute route straight to that route, past the app's routing.

    The router tries routes one by one, and FastAPI's middleware wraps each request: about a
    third of a batched request's Python time on the event loop (BENCHMARKS.md). This lane sits
    behind the service's metrics and time limit and in front of all of the framework's layers
    (``app._FrontedAPI``), and matches what a compute route's template would match:
    ``/models/{name}/<method>`` with a non-empty name, or ``/<method>`` for the default model.
    Everything else, a GET to a compute path included (405), goes on to the router. The compute
    routes are the first the router tries for these paths (``routes.py``), so both ways reach
    the same route.
    """

    def __init__(self, app: ASGIApp, routes: list):
        self.app = app
        self.named: dict[str, ComputeRoute] = {}
        self.default: dict[str, ComputeRoute] = {}
        for route in routes:
            if isinstance(route, ComputeRoute) and "POST" in route.methods:
                head, _, method = route.path.rpartition("/")
                table = {"/models/{name}": self.named, "": self.default}.get(head)
                if table is not None:
                    table.setdefault(method, route)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            parts = get_route_path(scope).split("/")
            route, params = None, {}
            if len(parts) == 2:
                route = self.default.get(parts[1])
            elif len(parts) == 4 and parts[1] == "models" and parts[2]:
                route, params = self.named.get(parts[3]), {"name": parts[2]}
            if route is not None:
                scope["route"], scope["endpoint"], scope["path_params"] = (
                    route, route.endpoint, params)
                await route.handle(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _headers(scope: Scope) -> dict[bytes, bytes]:
    # Names arrive lower-cased; a repeated header keeps its first value, as Starlette's get().
    headers: dict[bytes, bytes] = {}
    for key, value in scope["headers"]:
        headers.setdefault(key, value)
    return headers


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("latin-1")

