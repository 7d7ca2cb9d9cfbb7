"""The Open Inference Protocol (KServe V2) front end: health, metadata and evaluation, so KServe,
Triton-style clients and load balancers treat gradserve as a standard inference server.

A model takes the tensor ``x`` (n, m), and optionally ``w`` (p,) or (p, 1), the weights to evaluate
at (the stored ones otherwise), and returns ``y`` (n, k), in the model's datatype (FP64 or FP32).
Tensors travel in the protocol's JSON form (``data`` in row-major order, flat or nested) or in its
binary data extension: the JSON header, of ``Inference-Header-Content-Length`` bytes, then each
tensor marked ``"binary_data_size"`` as raw little-endian bytes, in order. Only translation lives
here: every check and every computation is the data plane's. See docs/v2.md.
"""

from __future__ import annotations

import math

import numpy as np
import orjson
from fastapi import APIRouter, Request, Response

from .. import __version__
from .. import errors as e
from ..dataplane import DataPlane
from ..engine import Model
from ..wire import numbers
from . import protocol_schemas as schema
from .deps import Plane, read_body
from .errors import headers_of, json_response, status_of, translating_route
from .security import require

__all__ = ["router"]

_DATATYPES = {"FP64": "<f8", "FP32": "<f4", "FP16": "<f2", "INT64": "<i8", "INT32": "<i4",
              "INT16": "<i2", "INT8": "i1", "UINT64": "<u8", "UINT32": "<u4", "UINT16": "<u2",
              "UINT8": "u1"}
_NAMES = {np.dtype("float64"): "FP64", np.dtype("float32"): "FP32"}
HEADER_LENGTH = "Inference-Header-Content-Length"


def _error(exc: e.GradserveError) -> Response:
    """The protocol's error shape, ``{"error": message}``; a caller's mistake is a 400 (422
    is not a code its clients know)."""
    status = status_of(exc)
    return json_response({"error": f"{exc.type}: {exc.message}"}, 400 if status == 422 else status,
                         headers_of(exc) or None)


router = APIRouter(prefix="/v2", tags=["Open Inference Protocol"],
                   route_class=translating_route(_error), default_response_class=Response)
# With API keys on: metadata and model readiness need the read scope, inference the compute
# scope, as on the REST routes; the two health probes stay open, like /healthz and /readyz.
READ, COMPUTE = [require("read")], [require("compute")]


def _model(plane: DataPlane, name: str, version: str | None) -> Model:
    model = plane.model(name)
    if version is not None and version != str(model.version):
        raise e.ModelNotFound(f"model {name!r} serves version {model.version}, not {version!r}")
    return model


def _metadata(model: Model) -> dict:
    datatype = _NAMES[model.dtype]
    return {"name": model.name, "versions": [str(model.version)], "platform": "gradserve",
            "inputs": [{"name": "x", "datatype": datatype, "shape": [-1, model.n_inputs]}],
            "outputs": [{"name": "y", "datatype": datatype, "shape": [-1, model.n_outputs]}]}


def _tensor(spec: object, binary: memoryview, offset: int) -> tuple[str, np.ndarray, int]:
    """(name, array, offset after its binary data) of one request input."""
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise e.MalformedBody("each input must be an object with a name, shape, datatype and data")
    name, shape, datatype = spec["name"], spec.get("shape"), spec.get("datatype")
    if (not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool)
                                               and d >= 0 for d in shape)):
        raise e.MalformedBody(f"input {name!r}: shape must be a list of non-negative integers")
    if datatype not in _DATATYPES:
        raise e.InvalidInput(f"input {name!r}: datatype {datatype!r} is not supported; send one "
                             f"of {', '.join(_DATATYPES)}")
    dtype = np.dtype(_DATATYPES[datatype])
    size = _parameters(spec, f"input {name!r}").get("binary_data_size")
    count = math.prod(shape)
    if size is not None:
        if not isinstance(size, int) or size != count * dtype.itemsize or offset + size > len(binary):
            raise e.MalformedBody(f"input {name!r}: binary_data_size {size!r} does not match its "
                                  f"shape {shape} and datatype {datatype}, or runs past the body")
        arr = np.frombuffer(binary[offset:offset + size], dtype=dtype).reshape(shape)
        return name, arr, offset + size
    arr = numbers(f"input {name!r}: data", spec.get("data")).astype(dtype)
    if arr.size != count:
        raise e.InvalidInput(f"input {name!r}: data holds {arr.size} values; shape {shape} needs {count}")
    return name, arr.reshape(shape), offset


def _parameters(obj: dict, where: str) -> dict:
    parameters = obj.get("parameters")
    if parameters is None:
        return {}
    if not isinstance(parameters, dict):
        raise e.MalformedBody(f"{where}: parameters must be a JSON object")
    return parameters


def _inputs(doc: object, binary: memoryview) -> dict[str, np.ndarray]:
    if not isinstance(doc, dict) or not isinstance(doc.get("inputs"), list):
        raise e.MalformedBody("the inference request must be a JSON object with a list 'inputs'")
    if "id" in doc and not isinstance(doc["id"], str):
        raise e.MalformedBody("the request id must be a string")
    arrays, offset = {}, 0
    for spec in doc["inputs"]:
        name, arr, offset = _tensor(spec, binary, offset)
        arrays[name] = arr
    unknown = sorted(set(arrays) - {"x", "w"})
    if unknown or "x" not in arrays:
        raise e.InvalidInput(f"inputs must be 'x' (n, m) and optionally 'w' (p,); got "
                             f"{', '.join(arrays) or 'none'}")
    return arrays


def _binary_output(doc: dict) -> bool:
    """True when the request asks for y in the binary data extension."""
    wanted = bool(_parameters(doc, "the request").get("binary_data_output", False))
    outputs = doc.get("outputs") or []
    if not isinstance(outputs, list):
        raise e.MalformedBody("outputs must be a list of requested outputs")
    for output in outputs:
        if not isinstance(output, dict) or output.get("name") != "y":
            raise e.InvalidInput("the only output is 'y'")
        wanted = bool(_parameters(output, "output 'y'").get("binary_data", wanted))
    return wanted


@router.get("", operation_id="v2_server_metadata", summary="V2: server metadata",
            dependencies=READ, **schema.v2("server"))
async def server_metadata() -> Response:
    return json_response({"name": "gradserve", "version": __version__,
                          "extensions": ["binary_tensor_data"]})


@router.get("/health/live", operation_id="v2_live", summary="V2: alive",
            **schema.v2("live", errors=False))
async def live() -> Response:
    return json_response({"live": True})


@router.get("/health/ready", operation_id="v2_ready", summary="V2: every model ready",
            **schema.v2("ready", errors=False))
async def ready(plane: Plane) -> Response:
    # The protocol answers "false" with a 4xx code.
    return json_response({"ready": plane.ready}, 200 if plane.ready else 400)


async def _model_metadata(plane: DataPlane, name: str, version: str | None) -> Response:
    return json_response(_metadata(_model(plane, name, version)))


async def _model_ready(plane: DataPlane, name: str, version: str | None) -> Response:
    _model(plane, name, version)  # raises (not ready, unknown) unless ready
    return json_response({"name": name, "ready": True})


async def _infer(plane: DataPlane, name: str, version: str | None, request: Request) -> Response:
    model = _model(plane, name, version)
    encoding = request.headers.get("content-encoding", "identity").lower()
    if encoding != "identity":
        raise e.UnsupportedMediaType(f"Content-Encoding {encoding!r} is not supported; send the "
                                     "body uncompressed")
    body = await read_body(request, plane.settings.max_body_bytes)
    header = request.headers.get(HEADER_LENGTH)
    if header is not None and (not header.isdigit() or int(header) > len(body)):
        raise e.MalformedBody(f"{HEADER_LENGTH} {header!r} is not a length within the body")
    split = int(header) if header is not None else len(body)
    try:
        doc = orjson.loads(body[:split])
    except orjson.JSONDecodeError as exc:
        raise e.MalformedBody(f"the inference request is not valid JSON ({exc})") from None
    arrays = _inputs(doc, memoryview(body)[split:])
    binary = _binary_output(doc)
    y = await plane.evaluate(name, arrays["x"], arrays.get("w"), caller=request.client)
    output = {"name": "y", "datatype": _NAMES[y.dtype], "shape": list(y.shape)}
    answer = {"model_name": model.name, "model_version": str(model.version), "outputs": [output]}
    if "id" in doc:
        answer["id"] = doc["id"]
    if not binary:
        output["data"] = y.ravel().tolist()
        return json_response(answer)
    data = np.ascontiguousarray(y, dtype=y.dtype.newbyteorder("<")).tobytes()
    output["parameters"] = {"binary_data_size": len(data)}
    head = orjson.dumps(answer)
    return Response(head + data, media_type="application/octet-stream",
                    headers={HEADER_LENGTH: str(len(head))})


def _routes(versioned: bool) -> None:
    """Register the model routes, under ``/models/{name}`` or ``.../versions/{version}``."""
    if versioned:
        async def metadata(name: str, version: str, plane: Plane) -> Response:
            return await _model_metadata(plane, name, version)

        async def model_ready(name: str, version: str, plane: Plane) -> Response:
            return await _model_ready(plane, name, version)

        async def infer(name: str, version: str, request: Request, plane: Plane) -> Response:
            return await _infer(plane, name, version, request)
    else:
        async def metadata(name: str, plane: Plane) -> Response:
            return await _model_metadata(plane, name, None)

        async def model_ready(name: str, plane: Plane) -> Response:
            return await _model_ready(plane, name, None)

        async def infer(name: str, request: Request, plane: Plane) -> Response:
            return await _infer(plane, name, None, request)
    path = "/models/{name}" + ("/versions/{version}" if versioned else "")
    suffix = "_version" if versioned else ""
    router.add_api_route(path, metadata, methods=["GET"], operation_id=f"v2_model_metadata{suffix}",
                         summary="V2: model metadata", dependencies=READ,
                         **schema.v2("model"))
    router.add_api_route(f"{path}/ready", model_ready, methods=["GET"], dependencies=READ,
                         operation_id=f"v2_model_ready{suffix}", summary="V2: model ready",
                         **schema.v2("model_ready"))
    router.add_api_route(f"{path}/infer", infer, methods=["POST"], operation_id=f"v2_infer{suffix}",
                         summary="V2: y = F(x, w), JSON or binary tensors", dependencies=COMPUTE,
                         **schema.v2("infer"))


_routes(versioned=False)
_routes(versioned=True)
