"""The UM-Bridge front end: every model over the UM-Bridge HTTP protocol (version 1.0), so its
clients (Python ``umbridge.HTTPModel``, C++, R, MATLAB, Julia, and the UQ tools built on them) use
our models unchanged.

UM-Bridge sees a model as a function of a list of vectors to a list of vectors. The mapping (see
docs/umbridge.md), chosen by the request's ``config`` (every key optional):

    config {"batch": n, "weights": false}   inputs [x (n·m)]        outputs [y (n·k)]
    config {"batch": n, "weights": true}    inputs [x (n·m), w (p)] outputs [y (n·k)]

x and y are row-major flattenings of the (n, m) and (n, k) batches (n = 1 by default: one sample,
what UQ clients send); without ``"weights"`` the stored weights are used. Only translation lives
here: every check and every computation is the data plane's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from fastapi import APIRouter, Request, Response

from .. import errors as e
from ..dataplane import DataPlane
from ..engine import Model
from ..wire import json_object, numbers
from . import protocol_schemas as schema
from .deps import Plane, read_body
from .errors import error_response, headers_of, json_response, status_of, translating_route
from .security import require

__all__ = ["router", "PROTOCOL_VERSION"]

PROTOCOL_VERSION = 1.0
_SUPPORT = {"Evaluate": True, "Gradient": True, "ApplyJacobian": True, "ApplyHessian": True}


def _error(exc: e.GradserveError) -> Response:
    """UM-Bridge's error shape: 400 for every mistake of the caller, typed ModelNotFound or
    InvalidInput; errors outside the protocol (not ready, no key) keep their own type and code."""
    status = status_of(exc)
    if isinstance(exc, e.ModelNotFound):
        return error_response(400, "ModelNotFound", exc.message)
    if status in (400, 413, 415, 422):
        return error_response(400, "InvalidInput", exc.message)
    return error_response(status, exc.type, exc.message, headers_of(exc) or None)


router = APIRouter(tags=["UM-Bridge"], route_class=translating_route(_error),
                   default_response_class=Response)
# With API keys on, describing a model needs the read scope and computing the compute scope, as
# on the REST routes. UM-Bridge clients send no Authorization header: on a keyed server they
# reach it through a proxy that adds one (docs/umbridge.md).
READ, COMPUTE = [require("read")], [require("compute")]


@dataclass(frozen=True)
class Layout:
    """How one request's ``config`` lays a model's arrays out as UM-Bridge vectors."""

    n: int
    weights: bool
    m: int
    k: int
    p: int

    @classmethod
    def of(cls, model: Model, config: object) -> "Layout":
        config = {} if config is None else config
        if not isinstance(config, dict):
            raise e.InvalidInput(f"config must be a JSON object, got {type(config).__name__}")
        unknown = sorted(set(config) - {"batch", "weights"})
        if unknown:
            raise e.InvalidInput(f"unknown config key {unknown[0]!r}; this server reads 'batch' "
                                 "(samples per call) and 'weights' (w as a second input)")
        n, weights = config.get("batch", 1), config.get("weights", False)
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise e.InvalidInput(f"config 'batch' must be a positive integer, got {n!r}")
        if not isinstance(weights, bool):
            raise e.InvalidInput(f"config 'weights' must be true or false, got {weights!r}")
        return cls(n, weights, model.n_inputs, model.n_outputs, model.n_weights)

    def input_sizes(self) -> list[int]:
        return [self.n * self.m] + ([self.p] if self.weights else [])

    def output_sizes(self) -> list[int]:
        return [self.n * self.k]

    def inputs(self, value: object) -> tuple[np.ndarray, np.ndarray | None]:
        """(x (n, m), w (p,) or None) from the list of input vectors."""
        sizes = self.input_sizes()
        if not isinstance(value, list) or len(value) != len(sizes):
            count = len(value) if isinstance(value, list) else type(value).__name__
            raise e.InvalidInput(f"input must be a list of {len(sizes)} vector(s) (sizes "
                                 f"{sizes}, see /InputSizes); got {count}")
        vectors = [_vector(f"input {i}", v, size) for i, (v, size) in enumerate(zip(value, sizes))]
        return vectors[0].reshape(self.n, self.m), vectors[1] if self.weights else None

    def index(self, key: str, value: object, count: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < count:
            raise e.InvalidInput(f"{key} must be an index between 0 and {count - 1}, got {value!r}")
        return value

    def input_index(self, key: str, value: object) -> int:
        return self.index(key, value, len(self.input_sizes()))

    def output_index(self, key: str, value: object) -> int:
        return self.index(key, value, 1)

    def sensitivity(self, value: object) -> np.ndarray:
        """py (n, k) from the flat ``sens`` vector."""
        return _vector("sens", value, self.output_sizes()[0]).reshape(self.n, self.k)

    def direction(self, value: object, wrt: int) -> tuple[np.ndarray | None, np.ndarray | None]:
        """(dw, dx) from the flat ``vec`` along input ``wrt``; the other one is None (held fixed)."""
        vec = _vector("vec", value, self.input_sizes()[wrt])
        return (None, vec.reshape(self.n, self.m)) if wrt == 0 else (vec, None)


def _vector(what: str, value: object, size: int) -> np.ndarray:
    arr = numbers(what, value)
    if arr.shape != (size,):
        raise e.InvalidInput(f"{what} has invalid length: expected {size}, got "
                             f"{arr.shape[0] if arr.ndim == 1 else arr.shape}")
    return arr


async def _read(plane: DataPlane, request: Request) -> tuple[dict, str, Layout]:
    """(the request's JSON object, the model name, its layout), the model looked up first: an
    unknown model is ModelNotFound whatever else the request holds."""
    doc = json_object(await read_body(request, plane.settings.max_body_bytes))
    name = doc.get("name")
    if not isinstance(name, str):
        raise e.InvalidInput("name must be the model's name (a string); see /Info")
    model = plane.model(name)
    return doc, name, Layout.of(model, doc.get("config"))


async def _read_derivative(plane: DataPlane, request: Request, *wrt_fields: str):
    """``_read``, then what every derivative call names, checked in this order: ``outWrt``, the
    index of each input named by ``wrt_fields``, and the point (x, w) from ``input``.
    Returns (doc, name, layout, [indices], x, w)."""
    doc, name, layout = await _read(plane, request)
    layout.output_index("outWrt", doc.get("outWrt"))
    wrts = [layout.input_index(field, doc.get(field)) for field in wrt_fields]
    x, w = layout.inputs(doc.get("input"))
    return doc, name, layout, wrts, x, w


def _output(vector: np.ndarray) -> list[float]:
    return np.asarray(vector, dtype=np.float64).ravel().tolist()


@router.get("/Info", dependencies=READ, operation_id="umbridge_info", **schema.umbridge("info"),
            summary="UM-Bridge: protocol version and models")
async def info(plane: Plane) -> Response:
    if not plane.ready:
        plane.model(None)  # raises the data plane's Unavailable, with its reason
    return json_response({"protocolVersion": PROTOCOL_VERSION, "models": plane.model_names()})


@router.post("/ModelInfo", dependencies=READ, operation_id="umbridge_model_info",
             **schema.umbridge("model_info", "named"),
             summary="UM-Bridge: supported calls")
async def model_info(request: Request, plane: Plane) -> Response:
    await _read(plane, request)
    return json_response({"support": _SUPPORT})


@router.post("/InputSizes", dependencies=READ, operation_id="umbridge_input_sizes",
             **schema.umbridge("input_sizes", "named"),
             summary="UM-Bridge: input sizes")
async def input_sizes(request: Request, plane: Plane) -> Response:
    _, _, layout = await _read(plane, request)
    return json_response({"inputSizes": layout.input_sizes()})


@router.post("/OutputSizes", dependencies=READ, operation_id="umbridge_output_sizes",
             **schema.umbridge("output_sizes", "named"),
             summary="UM-Bridge: output sizes")
async def output_sizes(request: Request, plane: Plane) -> Response:
    _, _, layout = await _read(plane, request)
    return json_response({"outputSizes": layout.output_sizes()})


@router.post("/Evaluate", dependencies=COMPUTE, operation_id="umbridge_evaluate",
             **schema.umbridge("evaluate", "evaluate"),
             summary="UM-Bridge: y = F(x, w)")
async def evaluate(request: Request, plane: Plane) -> Response:
    doc, name, layout = await _read(plane, request)
    x, w = layout.inputs(doc.get("input"))
    y = await plane.evaluate(name, x, w, caller=request.client)
    return json_response({"output": [_output(y)]})


@router.post("/Gradient", dependencies=COMPUTE, operation_id="umbridge_gradient",
             **schema.umbridge("vector", "gradient"),
             summary="UM-Bridge: sensᵀ·∂y/∂(input inWrt), by the gradient call")
async def gradient(request: Request, plane: Plane) -> Response:
    doc, name, layout, (wrt,), x, w = await _read_derivative(plane, request, "inWrt")
    pw, px = await plane.gradient(name, w, x, layout.sensitivity(doc.get("sens")),
                                  caller=request.client)
    return json_response({"output": _output(px if wrt == 0 else pw)})


@router.post("/ApplyJacobian", dependencies=COMPUTE, operation_id="umbridge_apply_jacobian",
             **schema.umbridge("vector", "apply_jacobian"),
             summary="UM-Bridge: ∂y/∂(input inWrt)·vec, by the forward_derivative call")
async def apply_jacobian(request: Request, plane: Plane) -> Response:
    doc, name, layout, (wrt,), x, w = await _read_derivative(plane, request, "inWrt")
    dw, dx = layout.direction(doc.get("vec"), wrt)
    return json_response({"output": _output(await plane.forward_derivative(
        name, w, dw, x, dx, caller=request.client))})


@router.post("/ApplyHessian", dependencies=COMPUTE, operation_id="umbridge_apply_hessian",
             **schema.umbridge("vector", "apply_hessian"),
             summary="UM-Bridge: ∂²<sens, y>/∂(input inWrt1)∂(input inWrt2)·vec, by the "
                     "hessian_vector call")
async def apply_hessian(request: Request, plane: Plane) -> Response:
    doc, name, layout, (wrt1, wrt2), x, w = await _read_derivative(plane, request, "inWrt1",
                                                                   "inWrt2")
    py = layout.sensitivity(doc.get("sens"))
    dw, dx = layout.direction(doc.get("vec"), wrt2)
    hw, hx = await plane.hessian_vector(name, w, x, py, dw, dx, caller=request.client)
    return json_response({"output": _output(hx if wrt1 == 0 else hw)})
