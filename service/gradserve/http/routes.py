"""Thin routes: decode the body, call the data plane, encode the answer. Nothing else.

Each model route exists twice: under ``/models/{name}`` and, for the default model, at the root.
"""

from __future__ import annotations

from typing import Annotated, Awaitable, Callable

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import PlainTextResponse

from ..dataplane import DataPlane
from ..errors import InvalidInput, PayloadTooLarge
from ..metrics import CONTENT_TYPE_LATEST
from ..wire import decode_body, encode_answer, wants_binary
from . import schemas
from .errors import json_response


def get_dataplane(request: Request) -> DataPlane:
    return request.app.state.dataplane


Plane = Annotated[DataPlane, Depends(get_dataplane)]
Handler = Callable[[DataPlane, "str | None", Request], Awaitable[Response]]

router = APIRouter()


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it exceeds ``limit`` (a declared length is checked
    before reading; a chunked body is counted as it arrives)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the body is {int(declared)} bytes; the limit is {limit} "
                              "(GRADSERVE_MAX_BODY_BYTES)")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the body exceeds the limit of {limit} bytes "
                                  "(GRADSERVE_MAX_BODY_BYTES)")
        chunks.append(chunk)
    return b"".join(chunks)


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


async def _evaluate(plane: DataPlane, name: str | None, request: Request) -> Response:
    a = await _decode(plane, name, request, "evaluate")
    return _answer(request, {"y": await plane.evaluate(name, a["x"], a["w"])})


async def _forward_derivative(plane: DataPlane, name: str | None, request: Request) -> Response:
    a = await _decode(plane, name, request, "forward_derivative")
    dy = await plane.forward_derivative(name, a["w"], a["dw"], a["x"], a["dx"])
    return _answer(request, {"dy": dy})


async def _gradient(plane: DataPlane, name: str | None, request: Request) -> Response:
    a = await _decode(plane, name, request, "gradient")
    pw, px = await plane.gradient(name, a["w"], a["x"], a["py"])
    return _answer(request, {"pw": pw, "px": px})


def _route(method: str, suffix: str, handler: Handler, operation: str, summary: str,
           extra: dict | None = None, responses: dict | None = None) -> None:
    """Register ``handler`` at ``/models/{name}<suffix>`` and, for the default model, at
    ``<suffix>`` (``/model`` for the metadata)."""

    async def named(name: str, request: Request, plane: Plane) -> Response:
        return await handler(plane, name, request)

    async def default(request: Request, plane: Plane) -> Response:
        return await handler(plane, None, request)

    common = dict(methods=[method], summary=summary, openapi_extra=extra, responses=responses,
                  response_class=Response)
    router.add_api_route(f"/models/{{name}}{suffix}", named, operation_id=operation,
                         tags=["models"], **common)
    router.add_api_route(suffix or "/model", default, operation_id=f"{operation}_default",
                         tags=["default model"], description="The same, for the default model.",
                         **common)


_COMPUTE_ERRORS = (400, 404, 413, 415, 422, 503)
_route("GET", "", _describe, "describe_model", "A model's metadata",
       responses={200: {"description": "Metadata"}, **schemas.error_responses(404, 503)})
_route("GET", "/weights", _get_weights, "get_weights", "The stored weights (p, 1) and their version",
       responses=schemas.answer("get_weights", 404, 503))
_route("PUT", "/weights", _put_weights, "set_weights",
       "Store new weights as a new version (If-Match: the version they replace)",
       extra=schemas.request_body("set_weights"),
       responses=schemas.answer("set_weights", 400, 404, 412, 413, 415, 422, 503, binary=False))
_route("POST", "/evaluate", _evaluate, "evaluate", "y = F(x, w)",
       extra=schemas.request_body("evaluate"), responses=schemas.answer("evaluate", *_COMPUTE_ERRORS))
_route("POST", "/forward_derivative", _forward_derivative, "forward_derivative",
       "Forward mode: dy = ∂y/∂w·dw + ∂y/∂x·dx", extra=schemas.request_body("forward_derivative"),
       responses=schemas.answer("forward_derivative", *_COMPUTE_ERRORS))
_route("POST", "/gradient", _gradient, "gradient", "Reverse mode: (pw, px) = pyᵀ·(∂y/∂w, ∂y/∂x)",
       extra=schemas.request_body("gradient"), responses=schemas.answer("gradient", *_COMPUTE_ERRORS))


@router.get("/models", tags=["models"], operation_id="list_models", summary="Every model's metadata")
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


@router.get("/info", tags=["health"], operation_id="info",
            summary="Version, device, served models and the settings that shape serving")
async def info(plane: Plane) -> Response:
    return json_response(plane.info())


@router.get("/metrics", tags=["health"], operation_id="metrics", summary="Prometheus metrics",
            response_class=PlainTextResponse)
async def metrics(plane: Plane) -> Response:
    return Response(plane.metrics.render(), media_type=CONTENT_TYPE_LATEST)
