"""Thin routes: decode the body, call the data plane, encode the answer. Nothing else.

Each model route exists twice: under ``/models/{name}`` and, for the default model, at the root.
"""

from __future__ import annotations

from functools import partial
from typing import Annotated, Awaitable, Callable

from fastapi import APIRouter, Depends, Path, Request, Response
from fastapi.responses import PlainTextResponse

from ..dataplane import DataPlane
from ..errors import InvalidInput
from ..metrics import CONTENT_TYPE_LATEST
from ..wire import decode_body, encode_answer, wants_binary
from . import schemas
from .compute import Compute, ComputeRoute
from .deps import Plane, read_body
from .errors import json_response
from .security import require

Handler = Callable[[DataPlane, "str | None", Request], Awaitable[Response]]

router = APIRouter()


async def _decode(plane: DataPlane, name: str | None, request: Request, kind: str) -> dict:
    plane.model(name)  # an unknown model is a 404 whatever the body holds
    fields, required = schemas.REQUESTS[kind]
    body = await read_body(request, plane.settings.max_body_bytes)
    return decode_body(body, request.headers.get("content-type"),
                       {name: name in required for name in fields})


def _answer(request: Request, values: dict, scalars: dict | None = None,
            headers: dict | None = None) -> Response:
    body, media = encode_answer(values, wants_binary(request.headers.get("accept")), scalars)
    return Response(body, media_type=media, headers=headers)


def _parse_if_match(value: str | None) -> int | None:
    if value is None or value.strip() == "*":
        return None
    tag = value.strip().removeprefix("W/").strip('"')
    if not tag.isdigit():
        raise InvalidInput(f"If-Match must be a weights version as given in ETag (e.g. \"3\"); "
                           f"got {value!r}")
    return int(tag)


# --- handlers, shared by the named and the default routes --------------------------------------

async def _describe(plane: DataPlane, name: str | None, request: Request) -> Response:
    return json_response(plane.describe(name))


async def _get_weights(plane: DataPlane, name: str | None, request: Request) -> Response:
    weights, version = plane.get_weights(name)
    return _answer(request, {"weights": weights}, {"version": version},
                   headers={"ETag": f'"{version}"'})


async def _put_weights(plane: DataPlane, name: str | None, request: Request) -> Response:
    if_match = _parse_if_match(request.headers.get("if-match"))
    args = await _decode(plane, name, request, "set_weights")
    version = await plane.set_weights(name, args["weights"], if_match)
    return json_response({"status": 0, "version": version}, headers={"ETag": f'"{version}"'})


async def _versions(plane: DataPlane, name: str | None, request: Request) -> Response:
    return json_response(plane.versions(name))


async def _restore(plane: DataPlane, name: str | None, request: Request) -> Response:
    if_match = _parse_if_match(request.headers.get("if-match"))
    restored = request.state.version
    version = await plane.restore(name, restored, if_match)
    return json_response({"status": 0, "version": version, "restored": restored},
                         headers={"ETag": f'"{version}"'})


# --- compute handlers, served by ComputeRoute: (plane, name, body fields, query, caller) -> arrays

async def _evaluate(plane: DataPlane, name: str | None, a: dict, query: dict, caller) -> dict:
    return {"y": await plane.evaluate(name, a["x"], a["w"], caller=caller)}


async def _forward_derivative(plane: DataPlane, name: str | None, a: dict, query: dict,
                              caller) -> dict:
    return {"dy": await plane.forward_derivative(name, a["w"], a["dw"], a["x"], a["dx"],
                                                 caller=caller)}


async def _gradient(plane: DataPlane, name: str | None, a: dict, query: dict, caller) -> dict:
    pw, px = await plane.gradient(name, a["w"], a["x"], a["py"], caller=caller)
    return {"pw": pw, "px": px}


async def _hessian_vector(plane: DataPlane, name: str | None, a: dict, query: dict,
                          caller) -> dict:
    hw, hx = await plane.hessian_vector(name, a["w"], a["x"], a["py"], a["dw"], a["dx"],
                                        caller=caller)
    return {"hw": hw, "hx": hx}


async def _jacobian(plane: DataPlane, name: str | None, a: dict, query: dict, caller) -> dict:
    wrt = query.get("wrt", "x")
    return {"jacobian": await plane.jacobian(name, a["w"], a["x"], wrt, caller=caller)}


def version_in_path(request: Request, version: Annotated[int, Path(
        ge=1, le=2**53, description="A stored version, as listed by /versions")]) -> int:
    """Validates the ``{version}`` of a path and hands it to the handler."""
    request.state.version = version
    return version


def _route(method: str, suffix: str, handler: Handler | None, operation: str, summary: str,
           scope: str, extra: dict | None = None, responses: dict | None = None,
           params: tuple = (), compute: Compute | None = None) -> None:
    """Register ``handler`` at ``/models/{name}<suffix>`` and, for the default model, at
    ``<suffix>`` (``/model`` for the metadata), open only to keys with ``scope``. ``params``:
    dependencies that validate further path parameters. ``compute`` instead of a handler: a
    compute route, served by ``ComputeRoute`` (its endpoints only declare the parameters)."""

    common = dict(methods=[method], summary=summary, openapi_extra=extra,
                  responses={**(responses or {}), **schemas.error_responses(401, 403, 504)},
                  response_class=Response, dependencies=[require(scope), *params])
    if compute is not None:
        named, default = _declared_named, _declared_default
        common["route_class_override"] = partial(ComputeRoute, kind=suffix[1:], compute=compute)
    else:
        async def named(name: str, request: Request, plane: Plane) -> Response:
            return await handler(plane, name, request)

        async def default(request: Request, plane: Plane) -> Response:
            return await handler(plane, None, request)
    router.add_api_route(f"/models/{{name}}{suffix}", named, operation_id=operation,
                         tags=["models"], **common)
    router.add_api_route(suffix or "/model", default, operation_id=f"{operation}_default",
                         tags=["default model"], description="The same, for the default model.",
                         **common)


async def _declared_named(name: str) -> Response:
    raise AssertionError("ComputeRoute.handle serves this route")  # never called


async def _declared_default() -> Response:
    raise AssertionError("ComputeRoute.handle serves this route")  # never called


_BODY_ERRORS = (400, 404, 408, 413, 415, 422, 503)
# The compute routes first: the route table is matched in order, and they are the hot ones.
_route("POST", "/evaluate", None, "evaluate", "y = F(x, w)", "compute",
       extra=schemas.request_body("evaluate"), responses=schemas.answer("evaluate", *_BODY_ERRORS),
       compute=_evaluate)
_route("POST", "/forward_derivative", None, "forward_derivative",
       "Forward mode: dy = ∂y/∂w·dw + ∂y/∂x·dx", "compute",
       extra=schemas.request_body("forward_derivative"),
       responses=schemas.answer("forward_derivative", *_BODY_ERRORS), compute=_forward_derivative)
_route("POST", "/gradient", None, "gradient", "Reverse mode: (pw, px) = pyᵀ·(∂y/∂w, ∂y/∂x)",
       "compute", extra=schemas.request_body("gradient"),
       responses=schemas.answer("gradient", *_BODY_ERRORS), compute=_gradient)
_route("POST", "/hessian_vector", None, "hessian_vector",
       "Hessian-vector product of <py, y>: (hw, hx) = ∇²<py, y>·(dw, dx)", "compute",
       extra=schemas.request_body("hessian_vector"),
       responses=schemas.answer("hessian_vector", *_BODY_ERRORS), compute=_hessian_vector)
_route("POST", "/jacobian", None, "jacobian",
       "Full Jacobian of each row: ∂y/∂x (n, k, m) or ∂y/∂w (n, k, p)", "compute",
       extra={**schemas.request_body("jacobian"), "parameters": [schemas.WRT]},
       responses=schemas.answer("jacobian", *_BODY_ERRORS), compute=_jacobian)
_route("GET", "", _describe, "describe_model", "A model's metadata", "read",
       responses=schemas.answer("describe", 404, 503, binary=False))
_route("GET", "/weights", _get_weights, "get_weights", "The stored weights (p, 1) and their version",
       "read", responses=schemas.answer("get_weights", 404, 413, 503))
_route("PUT", "/weights", _put_weights, "set_weights",
       "Store new weights as a new version (If-Match: the version they replace)", "write",
       extra=schemas.request_body("set_weights"),
       responses=schemas.answer("set_weights", *_BODY_ERRORS, 412, binary=False))
_route("GET", "/versions", _versions, "list_versions",
       "The stored weight versions (oldest first) and the one served", "read",
       responses=schemas.answer("versions", 404, 503, binary=False))
_route("POST", "/versions/{version}/restore", _restore, "restore_version",
       "Serve a stored version again, stored as a new version (If-Match honoured)", "write",
       responses=schemas.answer("restore", 404, 412, 422, 503, binary=False),
       params=(Depends(version_in_path),))


@router.get("/models", tags=["models"], operation_id="list_models", summary="Every model's metadata",
            dependencies=[require("read")], response_class=Response,
            responses={200: {"description": "Metadata", "content": {"application/json": {
                "schema": schemas.MODEL_LIST}}}, **schemas.error_responses(401, 403, 503, 504)})
async def list_models(plane: Plane) -> Response:
    return json_response({"models": [plane.describe(name) for name in plane.model_names()]})


@router.get("/healthz", tags=["health"], operation_id="healthz", summary="Alive")
async def healthz() -> Response:
    return json_response({"status": "ok"})


@router.get("/readyz", tags=["health"], operation_id="readyz",
            summary="Ready: every model loaded and compiled, and not draining",
            responses={503: {"description": "Not ready"}})
async def readyz(plane: Plane) -> Response:
    if plane.ready:
        return json_response({"status": "ready", "models": plane.model_names()})
    return json_response({"status": "draining" if plane.draining else "not ready"}, 503)


# It names the models, like /models: the read scope.
@router.get("/info", tags=["health"], operation_id="info",
            summary="Version, device, served models and the settings that shape serving",
            dependencies=[require("read")], responses=schemas.error_responses(401, 403, 504))
async def info(plane: Plane) -> Response:
    return json_response(plane.info())


# Metrics name the models and how they are used: they need the read scope (Prometheus sends a
# key with `authorization: {credentials: ...}` in its scrape configuration).
@router.get("/metrics", tags=["health"], operation_id="metrics", summary="Prometheus metrics",
            response_class=PlainTextResponse, dependencies=[require("read")],
            responses=schemas.error_responses(401, 403, 504))
async def metrics(plane: Plane) -> Response:
    return Response(plane.metrics.render(), media_type=CONTENT_TYPE_LATEST)
