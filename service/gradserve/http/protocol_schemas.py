"""OpenAPI descriptions of the UM-Bridge and Open Inference Protocol bodies.

Both front ends decode their bodies by hand (orjson into numpy), so FastAPI never sees their
shape; this module states it, with every status their routes can answer, for the committed spec
(and for the fuzzing that holds the service to it).
"""

from __future__ import annotations

from ..wire import JSON

__all__ = ["umbridge", "v2", "V2_ERROR", "UMBRIDGE_ERRORS", "V2_ERRORS"]

_REST_ERROR = {"$ref": "#/components/schemas/Error"}
NUMBERS = {"type": "array", "items": {"type": "number"}}
INDEX = {"type": "integer", "minimum": 0}

# --- UM-Bridge ---------------------------------------------------------------------------------

_NAMED = {"name": {"type": "string", "description": "The model's name, as listed by /Info."},
          "config": {"type": "object", "description": "Optional: {\"batch\": n (samples per "
                     "call, default 1), \"weights\": true (w as input 1)}; docs/umbridge.md.",
                     "properties": {"batch": {"type": "integer", "minimum": 1},
                                    "weights": {"type": "boolean"}},
                     "additionalProperties": False}}
_INPUT = {"input": {"type": "array", "items": NUMBERS,
                    "description": "The input vectors: [x (n·m)] or [x (n·m), w (p)]."}}
_UM_REQUESTS = {
    "named": (_NAMED, ["name"]),
    "evaluate": ({**_NAMED, **_INPUT}, ["name", "input"]),
    "gradient": ({**_NAMED, **_INPUT, "outWrt": INDEX, "inWrt": INDEX,
                  "sens": {**NUMBERS, "description": "∂(objective)/∂y, n·k values."}},
                 ["name", "input", "outWrt", "inWrt", "sens"]),
    "apply_jacobian": ({**_NAMED, **_INPUT, "outWrt": INDEX, "inWrt": INDEX,
                        "vec": {**NUMBERS, "description": "A direction in input inWrt."}},
                       ["name", "input", "outWrt", "inWrt", "vec"]),
    "apply_hessian": ({**_NAMED, **_INPUT, "outWrt": INDEX, "inWrt1": INDEX, "inWrt2": INDEX,
                       "sens": NUMBERS,
                       "vec": {**NUMBERS, "description": "A direction in input inWrt2."}},
                      ["name", "input", "outWrt", "inWrt1", "inWrt2", "sens", "vec"]),
}
_SIZES = {"type": "array", "items": {"type": "integer"}}
_UM_ANSWERS = {
    "info": {"protocolVersion": {"type": "number"}, "models": {"type": "array",
                                                               "items": {"type": "string"}}},
    "model_info": {"support": {"type": "object", "properties": {
        key: {"type": "boolean"} for key in ("Evaluate", "Gradient", "ApplyJacobian",
                                             "ApplyHessian")}}},
    "input_sizes": {"inputSizes": _SIZES},
    "output_sizes": {"outputSizes": _SIZES},
    "evaluate": {"output": {"type": "array", "items": NUMBERS}},
    "vector": {"output": NUMBERS},
}
UMBRIDGE_ERRORS = (400, 401, 403, 408, 503, 504)


def _object(fields: dict, required: list[str] | None = None) -> dict:
    return {"type": "object", "properties": fields, "required": required or list(fields)}


def _errors(codes, schema: dict) -> dict:
    return {code: {"description": "Error", "content": {JSON: {"schema": schema}}} for code in codes}


def umbridge(answer: str, request: str | None = None) -> dict:
    """``add_api_route`` keywords of one UM-Bridge route: its body and its answers."""
    responses = {200: {"description": "OK", "content": {JSON: {"schema": _object(
        _UM_ANSWERS[answer])}}}, **_errors(UMBRIDGE_ERRORS, _REST_ERROR)}
    extra = None
    if request is not None:
        fields, required = _UM_REQUESTS[request]
        extra = {"requestBody": {"required": True, "content": {
            JSON: {"schema": _object(fields, required)}}}}
    return {"responses": responses, "openapi_extra": extra}


# --- Open Inference Protocol -------------------------------------------------------------------

V2_ERROR = {"type": "object", "required": ["error"], "additionalProperties": False,
            "properties": {"error": {"type": "string"}}}
# The request time limit answers from outside the router, in the REST error shape.
V2_ERRORS = {**_errors((400, 401, 403, 404, 413, 415, 503), V2_ERROR),
             **_errors((408, 504), _REST_ERROR)}
_PARAMETERS = {"type": "object", "description": "Protocol parameters, e.g. binary_data_size, "
               "binary_data, binary_data_output."}
_TENSOR_META = {"name": {"type": "string"}, "datatype": {"type": "string"},
                "shape": {"type": "array", "items": {"type": "integer"}}}
_INFER_REQUEST = _object({
    "id": {"type": "string"}, "parameters": _PARAMETERS,
    "inputs": {"type": "array", "items": _object({
        "name": {"type": "string", "description": "x (n, m), or w (p,) / (p, 1)."},
        "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
        "datatype": {"type": "string", "enum": ["FP64", "FP32", "FP16", "INT64", "INT32",
                                                "INT16", "INT8", "UINT64", "UINT32", "UINT16",
                                                "UINT8"]},
        "parameters": _PARAMETERS,
        "data": {"type": "array", "description": "Row-major values, flat or nested; absent "
                 "when the tensor travels as binary data."}}, ["name", "shape", "datatype"])},
    "outputs": {"type": "array", "items": _object({
        "name": {"type": "string", "enum": ["y"]}, "parameters": _PARAMETERS}, ["name"])}},
    ["inputs"])
_INFER_ANSWER = _object({
    "model_name": {"type": "string"}, "model_version": {"type": "string"}, "id": {"type": "string"},
    "outputs": {"type": "array", "items": _object({
        **_TENSOR_META, "parameters": _PARAMETERS, "data": NUMBERS},
        ["name", "datatype", "shape"])}}, ["model_name", "model_version", "outputs"])
_BINARY_NOTE = ("application/octet-stream: the binary data extension, the JSON header of "
                "Inference-Header-Content-Length bytes, then the tensors' raw little-endian bytes.")
_V2_ANSWERS = {
    "server": _object({"name": {"type": "string"}, "version": {"type": "string"},
                       "extensions": {"type": "array", "items": {"type": "string"}}}),
    "live": _object({"live": {"type": "boolean"}}),
    "ready": _object({"ready": {"type": "boolean"}}),
    "model": _object({"name": {"type": "string"},
                      "versions": {"type": "array", "items": {"type": "string"}},
                      "platform": {"type": "string"},
                      "inputs": {"type": "array", "items": _object(_TENSOR_META)},
                      "outputs": {"type": "array", "items": _object(_TENSOR_META)}}),
    "model_ready": _object({"name": {"type": "string"}, "ready": {"type": "boolean"}}),
}


def v2(answer: str, errors: bool = True) -> dict:
    """``add_api_route`` keywords of one V2 route: its body (infer) and its answers."""
    if answer == "infer":
        ok = {"description": "OK; " + _BINARY_NOTE, "content": {
            JSON: {"schema": _INFER_ANSWER},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}
        extra = {"requestBody": {"required": True, "description": _BINARY_NOTE, "content": {
            JSON: {"schema": _INFER_REQUEST},
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}}
    else:
        ok = {"description": "OK", "content": {JSON: {"schema": _V2_ANSWERS[answer]}}}
        extra = None
    responses = {200: ok, **(V2_ERRORS if errors else {})}
    if answer == "ready":
        responses[400] = {"description": "Not ready", "content": {JSON: {"schema": _V2_ANSWERS["ready"]}}}
    return {"responses": responses, "openapi_extra": extra}
