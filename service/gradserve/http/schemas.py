"""OpenAPI descriptions of the hand-decoded bodies.

Bodies are decoded with orjson straight into numpy (see ``gradserve.wire``), so FastAPI never
sees their shape; this module states it for the spec that non-Python users read.
"""

from __future__ import annotations

from typing import get_args

from ..spec import Kind
from ..wire import BINARY, JSON


def matrix(description: str) -> dict:
    return {"type": "array", "description": description,
            "items": {"type": "array", "items": {"type": "number"}}}


def tensor(description: str) -> dict:
    """An array of 2 or 3 axes (the third: one entry per direction)."""
    return {"type": "array", "description": description,
            "items": {"type": "array", "items": {"oneOf": [
                {"type": "number"}, {"type": "array", "items": {"type": "number"}}]}}}


def column(description: str) -> dict:
    return {"description": description + " Shape (p, 1); (p,) is accepted too.",
            "oneOf": [{"type": "array", "items": {"type": "array", "items": {"type": "number"},
                                                   "minItems": 1, "maxItems": 1}},
                      {"type": "array", "items": {"type": "number"}}]}


W_AT = column("Weights to evaluate at (the evaluation point only: the stored weights do not "
              "change). Omitted or null: the stored weights.")
X = matrix("Inputs in raw units, shape (n, m), n >= 1.")

DW_MANY = {"description": "Weight perturbation, shape (p, 1) or (p,); (p, r) for r directions "
           "at once. Omitted or null: weights held fixed (dw or dx is needed).",
           "oneOf": [{"type": "array", "items": {"type": "number"}},
                     {"type": "array", "items": {"type": "array", "items": {"type": "number"}}}]}
PY = matrix("Output perturbation, shape (n, k).")

REQUESTS = {
    "evaluate": ({"x": X, "w": W_AT}, ["x"]),
    "forward_derivative": ({"w": W_AT, "dw": DW_MANY, "x": X,
                            "dx": tensor("Input perturbation, shape (n, m); (n, m, r) for r "
                                         "directions at once. Omitted or null: inputs held "
                                         "fixed.")}, ["x"]),
    "gradient": ({"w": W_AT, "x": X, "py": tensor("Output perturbation, shape (n, k); (n, k, r) "
                                                  "for r perturbations at once.")}, ["x", "py"]),
    "hessian_vector": ({"w": W_AT, "x": X, "py": PY,
                        "dw": column("Weight direction. Omitted or null: zero."),
                        "dx": matrix("Input direction, shape (n, m). Omitted or null: zero.")},
                       ["x", "py"]),
    "jacobian": ({"w": W_AT, "x": X}, ["x"]),
    "set_weights": ({"weights": column("The new weights.")}, ["weights"]),
}

_FEATURE = {"type": "object", "required": ["name", "min", "max"],
            "properties": {"name": {"type": "string"}, "min": {"type": "number"},
                           "max": {"type": "number"}}}
DESCRIBE = {"name": {"type": "string"},
            "kind": {"type": "string", "enum": list(get_args(Kind))},
            "version": {"type": "integer", "description": "The weights version served."},
            "dtype": {"type": "string"}, "n_inputs": {"type": "integer"},
            "n_outputs": {"type": "integer"}, "n_weights": {"type": "integer"},
            "inputs": {"type": "array", "items": _FEATURE},
            "outputs": {"type": "array", "items": _FEATURE},
            "buckets": {"type": "array", "items": {"type": "integer"}},
            "device": {"type": "string"}}
_VERSION = {"type": "object", "required": ["version", "stored_at"], "properties": {
    "version": {"type": "integer"},
    "stored_at": {"type": "string", "format": "date-time", "description": "When it was stored (UTC)."}}}

ANSWERS = {
    "describe": (DESCRIBE, list(DESCRIBE)),
    "versions": ({"name": {"type": "string"},
                  "served": {"type": "integer", "description": "The version being served."},
                  "versions": {"type": "array", "items": _VERSION,
                               "description": "The versions kept on disk, oldest first."}},
                 ["name", "served", "versions"]),
    "restore": ({"status": {"type": "integer", "description": "0: stored and served."},
                 "version": {"type": "integer", "description": "The new version (a copy)."},
                 "restored": {"type": "integer", "description": "The version copied."}},
                ["status", "version", "restored"]),
    "evaluate": ({"y": matrix("Outputs, shape (n, k).")}, ["y"]),
    "forward_derivative": ({"dy": tensor("dy = ∂y/∂w·dw + ∂y/∂x·dx, shape (n, k); (n, k, r) for r "
                                         "directions.")}, ["dy"]),
    "gradient": ({"pw": tensor("pyᵀ·∂y/∂w, shape (p, 1); (p, 1, r) for py (n, k, r)."),
                  "px": tensor("pyᵀ·∂y/∂x, shape (n, m); (n, m, r) for py (n, k, r).")},
                 ["pw", "px"]),
    "hessian_vector": ({"hw": matrix("∂²<py, y>/∂w² · dw + ∂²<py, y>/∂w∂x · dx, shape (p, 1)."),
                        "hx": matrix("∂²<py, y>/∂x∂w · dw + ∂²<py, y>/∂x² · dx, shape (n, m).")},
                       ["hw", "hx"]),
    "jacobian": ({"jacobian": tensor("∂y_i/∂x_i, shape (n, k, m), or ∂y_i/∂w, shape (n, k, p), "
                                     "one block per row.")}, ["jacobian"]),
    "get_weights": ({"weights": matrix("The stored weights, shape (p, 1)."),
                     "version": {"type": "integer"}}, ["weights", "version"]),
    "set_weights": ({"status": {"type": "integer", "description": "0: stored."},
                     "version": {"type": "integer", "description": "The new version."}},
                    ["status", "version"]),
}

WRT = {"name": "wrt", "in": "query", "required": False,
       "description": "x: ∂y_i/∂x_i (n, k, m); w: ∂y_i/∂w (n, k, p). Refused with 413 when the "
                      "answer would exceed GRADSERVE_MAX_ANSWER_ELEMENTS.",
       "schema": {"type": "string", "enum": ["x", "w"], "default": "x"}}

_BINARY_NOTE = (f"`{BINARY}`: the same named arrays as little-endian tensors in the safetensors "
                "layout (docs/binary-encoding.md); scalars in the header's __metadata__.")

ERROR = {
    "type": "object", "required": ["error"], "additionalProperties": False,
    "properties": {"error": {
        "type": "object", "required": ["type", "message"],
        "properties": {"type": {"type": "string", "description": "The error class, e.g. InvalidInput."},
                       "message": {"type": "string"},
                       "status": {"type": "integer", "description": "set_weights status, when a weight vector is refused."}},
    }},
}


MODEL_LIST = {"type": "object", "required": ["models"], "additionalProperties": False,
              "properties": {"models": {"type": "array", "items": {
                  "type": "object", "properties": DESCRIBE, "required": list(DESCRIBE)}}}}


def _object(fields: dict, required: list[str]) -> dict:
    return {"type": "object", "properties": fields, "required": required,
            "additionalProperties": False}


def request_body(kind: str) -> dict:
    fields, required = REQUESTS[kind]
    return {"requestBody": {"required": True, "description": _BINARY_NOTE, "content": {
        JSON: {"schema": _object(fields, required)},
        BINARY: {"schema": {"type": "string", "format": "binary"}},
    }}}


_ERROR_REF = {"$ref": "#/components/schemas/Error"}
_ERROR_MEANING = {400: "Undecodable body", 401: "No valid API key", 403: "The key lacks the scope",
                  404: "No such model, version or route", 408: "The body did not arrive in time",
                  412: "If-Match names a version that is no longer current",
                  413: "Body, batch or answer too large", 415: "Unsupported Content-Type",
                  422: "Wrong shape, size or value", 503: "Not ready or overloaded (Retry-After)",
                  504: "Not finished within the request timeout"}


def error_responses(*codes: int) -> dict:
    return {code: {"description": _ERROR_MEANING.get(code, "Error"),
                   "content": {JSON: {"schema": _ERROR_REF}}} for code in codes}


def install(app) -> None:
    """Add the shared Error schema that the error responses refer to, once per document."""
    generate = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            doc = generate()
            doc.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR
        return app.openapi_schema

    app.openapi = openapi


def answer(kind: str, *errors: int, binary: bool = True) -> dict:
    fields, required = ANSWERS[kind]
    content = {JSON: {"schema": _object(fields, required)}}
    if binary:
        content[BINARY] = {"schema": {"type": "string", "format": "binary"}}
    return {200: {"description": "OK" + (f"; {_BINARY_NOTE}" if binary else ""), "content": content},
            **error_responses(*errors)}
