"""Request and answer bodies: JSON (nested lists) or binary (safetensors), decoded once into numpy.

Binary bodies use the safetensors layout (``application/x-safetensors``): an 8-byte little-endian
header length, a JSON header naming each array with its dtype, shape and byte range, then the
raw little-endian bytes. It carries several named arrays losslessly, is trivial to write from any
language, cannot execute code, and is the format model weights are already stored in. Scalars
that travel with arrays (``version``, ``status``) go in the header's ``__metadata__``.
See docs/binary-encoding.md.
"""

from __future__ import annotations

import json

import numpy as np
import orjson
import safetensors
import safetensors.numpy

from .errors import MalformedBody, UnsupportedMediaType

__all__ = ["JSON", "BINARY", "decode_body", "encode_answer", "json_object", "numbers", "wants_binary"]

JSON = "application/json"
BINARY = "application/x-safetensors"
_FLOAT_KINDS = "fiu"


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def wants_binary(accept: str | None) -> bool:
    """True when the Accept header prefers the binary encoding (it is listed, JSON is not first)."""
    if not accept:
        return False
    types = [_media_type(part) for part in accept.split(",")]
    return BINARY in types and (JSON not in types or types.index(BINARY) < types.index(JSON))


def decode_body(body: bytes, content_type: str | None, fields: dict[str, bool]) -> dict:
    """Decode a request body into ``{field: numpy array or None}``.

    ``fields`` maps each accepted field to whether it is required. Unknown fields are refused,
    so a misspelt ``dx`` is not silently read as "inputs held fixed".
    """
    media = _media_type(content_type)
    is_json = media in (JSON, "", "text/json") or media.endswith("+json")
    if is_json:
        values = _decode_json(body)
    elif media in (BINARY, "application/octet-stream"):
        values = _decode_binary(body)
    else:
        raise UnsupportedMediaType(
            f"Content-Type {content_type!r} is not supported; send {JSON} or {BINARY}")
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise MalformedBody(f"unknown field {unknown[0]!r}; expected fields: {', '.join(fields)}")
    for name, required in fields.items():
        if required and values.get(name) is None:
            raise MalformedBody(f"field {name!r} is required (fields: {', '.join(fields)})")
    if is_json:
        _refuse_non_numbers(body, len(values))
    return {name: values.get(name) for name in fields}


def json_object(body: bytes) -> dict:
    """The JSON object a request body holds, or MalformedBody saying what is wrong with it."""
    if not body:
        raise MalformedBody("the request body is empty; expected a JSON object")
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedBody(f"the body is not valid JSON ({exc}); NaN and Infinity are not "
                            "JSON: send finite numbers") from None
    if not isinstance(doc, dict):
        raise MalformedBody(f"the body must be a JSON object, got {type(doc).__name__}")
    return doc


def _decode_json(body: bytes) -> dict:
    doc = json_object(body)
    out = {}
    for name, value in doc.items():
        if value is None:
            out[name] = None
        elif isinstance(value, list):
            out[name] = _nested_list(name, value)
        else:
            raise MalformedBody(f"field {name!r} must be an array (nested lists of numbers), "
                                f"got {type(value).__name__}")
    return out


def _refuse_non_numbers(body: bytes, n_fields: int) -> None:
    """Refuse booleans and strings inside arrays, which numpy reads as numbers (true as 1, "2"
    as 2.0). Once the field names are known ones, a body holds only those names, numbers,
    arrays and nulls, so a scan of the bytes finds the rest without a check per number: a
    quote beyond the names' opens a string, and outside strings true/false are booleans."""
    if body.count(b'"') != 2 * n_fields:
        raise MalformedBody("an array holds a string; arrays hold numbers only")
    if b"true" in body or b"false" in body:
        raise MalformedBody("the body holds a boolean (true/false); arrays hold numbers only")


def _nested_list(name: str, value: list) -> np.ndarray:
    try:
        arr = np.array(value, dtype=np.float64)
    except (ValueError, TypeError) as exc:
        raise MalformedBody(f"field {name!r} must be a rectangular array of numbers ({exc})") from None
    # JSON has no NaN, so a NaN here was a null inside the array (numpy reads None as NaN).
    if np.isnan(arr).any():
        raise MalformedBody(f"field {name!r} holds a null inside the array; arrays hold numbers only")
    return arr


def numbers(name: str, value: object) -> np.ndarray:
    """A float64 array from a parsed JSON value (nested lists), for the front ends whose bodies
    mix arrays with strings and booleans. Refuses what numpy would silently read as a number:
    booleans (1 and 0), numeric strings, nulls (NaN)."""
    if not isinstance(value, list):
        raise MalformedBody(f"{name} must be an array of numbers, got {type(value).__name__}")
    _only_numbers(name, value)
    try:
        return np.array(value, dtype=np.float64)
    except (ValueError, TypeError) as exc:
        raise MalformedBody(f"{name} must be a rectangular array of numbers ({exc})") from None


_NUMBER_TYPES = {int, float}


def _only_numbers(name: str, value: list) -> None:
    kinds = set(map(type, value))  # one pass in C per list: no check per number in Python
    if kinds <= _NUMBER_TYPES:
        return
    if kinds <= _NUMBER_TYPES | {list}:
        for item in value:
            if isinstance(item, list):
                _only_numbers(name, item)
        return
    odd = next(k for k in kinds if k not in _NUMBER_TYPES and k is not list)
    raise MalformedBody(f"{name} holds a {_JSON_NAMES.get(odd, odd.__name__)}; arrays hold "
                        "numbers only")


_JSON_NAMES = {bool: "boolean", str: "string", type(None): "null", dict: "object"}


def _decode_binary(body: bytes) -> dict:
    if len(body) < 8:
        raise MalformedBody(f"a {BINARY} body needs at least 8 bytes, got {len(body)}")
    header_len = int.from_bytes(body[:8], "little")
    if header_len > len(body) - 8:
        raise MalformedBody(f"the binary header claims {header_len} bytes but the body has only "
                            f"{len(body) - 8} after the length prefix (truncated?)")
    try:
        tensors = safetensors.numpy.load(body)
    except (safetensors.SafetensorError, ValueError, TypeError) as exc:
        raise MalformedBody(f"the body is not a valid {BINARY} payload ({exc})") from None
    for name, arr in tensors.items():
        if arr.dtype.kind not in _FLOAT_KINDS:
            raise MalformedBody(f"array {name!r} has dtype {arr.dtype}; expected a float or int dtype")
    return tensors


def encode_answer(values: dict, binary: bool, scalars: dict | None = None) -> tuple[bytes, str]:
    """Encode arrays (and small scalars) as the requested media type: (body, media type)."""
    if binary:
        arrays = {k: np.ascontiguousarray(v) for k, v in values.items()}
        meta = {k: json.dumps(v) for k, v in (scalars or {}).items()}
        return safetensors.numpy.save(arrays, metadata=meta or None), BINARY
    doc = dict(scalars or {})
    doc.update(values)
    return orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY), JSON

