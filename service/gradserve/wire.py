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
import math

import numpy as np
import orjson

from .errors import MalformedBody, UnsupportedMediaType

__all__ = ["JSON", "BINARY", "decode_body", "encode_answer", "json_object", "numbers", "wants_binary"]

JSON = "application/json"
BINARY = "application/x-safetensors"


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


# The dtypes a binary body may carry: numpy's float and int kinds, little-endian. Safetensors
# names others (BF16, BOOL, C64, the 8-, 6- and 4-bit floats) that are refused by name below.
# The kinds stay "fiu": a bool or complex view would pass as numbers downstream.
_DTYPES = {code: (np.dtype(spec), np.dtype(spec).itemsize) for code, spec in (
    ("F64", "<f8"), ("F32", "<f4"), ("F16", "<f2"), ("I64", "<i8"), ("I32", "<i4"), ("I16", "<i2"),
    ("I8", "i1"), ("U64", "<u8"), ("U32", "<u4"), ("U16", "<u2"), ("U8", "u1"))}
assert all(dtype.kind in "fiu" for dtype, _ in _DTYPES.values())
_CODES = {dtype: code for code, (dtype, _) in _DTYPES.items()}
_EXPECTED_DTYPES = "expected a float or int dtype (" + ", ".join(_DTYPES) + ")"
_ENTRY_KEYS = {"dtype": None, "shape": None, "data_offsets": None}.keys()
_MAX_HEADER = 100_000_000  # as the safetensors library: a header is a few hundred bytes
_KINDS = {dict: "an object", list: "an array", str: "a string", int: "a number", float: "a number",
          bool: "a boolean", type(None): "null"}


def _invalid(detail: str) -> MalformedBody:
    return MalformedBody(f"the body is not a valid {BINARY} payload: {detail}")


def _kind(value: object) -> str:
    return _KINDS.get(type(value), type(value).__name__)


def _decode_binary(body: bytes) -> dict:
    """``{name: array}`` of a safetensors body, each array a read-only view of ``body`` (no copy).

    Checked as strictly as the safetensors library checks (and more: exact header keys, only
    float and int dtypes): a header within the body and at most 100 MB, a JSON object, string
    metadata, each array's byte range as long as its shape needs, and the ranges filling the
    data section exactly, with neither overlap nor gap nor trailing bytes.
    """
    if type(body) is not bytes:  # a writable buffer would give writable views
        body = memoryview(body).toreadonly()
    size = len(body)
    if size < 8:
        raise MalformedBody(f"a {BINARY} body needs at least 8 bytes, got {size}")
    header_len = int.from_bytes(body[:8], "little")
    if header_len > size - 8:
        raise MalformedBody(f"the binary header claims {header_len} bytes but the body has only "
                            f"{size - 8} after the length prefix (truncated?)")
    if header_len > _MAX_HEADER:
        raise _invalid(f"the header is {header_len} bytes; at most {_MAX_HEADER} are accepted")
    start = 8 + header_len
    try:
        header = orjson.loads(body[8:start])
    except orjson.JSONDecodeError as exc:
        raise _invalid(f"the header is not valid JSON ({exc}); expected a UTF-8 JSON "
                       "object") from None
    if type(header) is not dict:
        raise _invalid(f"the header must be a JSON object, got {_kind(header)}")
    if "__metadata__" in header:
        _check_metadata(header.pop("__metadata__"))
    data_len = size - start
    arrays, done = {}, 0  # done: where the arrays so far end, while they come in byte order
    for name, entry in header.items():
        if type(entry) is not dict or len(entry) != 3:
            raise _invalid(_entry_problem(name, entry))
        try:
            code, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
        except KeyError:
            raise _invalid(_entry_problem(name, entry)) from None
        try:
            dtype, itemsize = _DTYPES[code]
        except (KeyError, TypeError):  # TypeError: an unhashable dtype (a list, an object)
            raise _invalid(_dtype_problem(name, code)) from None
        if type(shape) is not list:
            raise _invalid(_shape_problem(name, shape))
        for axis in shape:
            if type(axis) is not int or axis < 0:
                raise _invalid(_shape_problem(name, shape))
        if type(offsets) is not list or len(offsets) != 2:
            raise _invalid(_offsets_problem(name, offsets))
        begin, end = offsets
        if type(begin) is not int or type(end) is not int:
            raise _invalid(_offsets_problem(name, offsets))
        if not 0 <= begin <= end <= data_len:
            raise _invalid(f"array {name!r} has data_offsets [{begin}, {end}]; expected 0 <= "
                           f"begin <= end <= {data_len}, the length of the data section "
                           "(truncated?)")
        count = math.prod(shape)
        if end - begin != count * itemsize:
            raise _invalid(f"array {name!r} has data_offsets [{begin}, {end}] ({end - begin} "
                           f"bytes); its shape {shape} of {code} needs {count * itemsize}")
        try:  # np.frombuffer(...).reshape(shape) in one step: a view of the body, no copy
            arrays[name] = np.ndarray(shape, dtype, body, start + begin)
        except ValueError as exc:
            raise _invalid(f"array {name!r} has shape {shape}, which numpy cannot hold "
                           f"({exc})") from None
        done = end if begin == done else -1  # once -1, it stays: no offset is negative
    if done != data_len:  # out of byte order (then sorted and checked), or short of the end
        _check_tiling(sorted((entry["data_offsets"][0], entry["data_offsets"][1], name)
                             for name, entry in header.items()), data_len)
    return arrays


def _shape_problem(name: str, shape: object) -> str:
    return f"array {name!r} has shape {_json(shape)}; expected a list of non-negative integers"


def _offsets_problem(name: str, offsets: object) -> str:
    return f"array {name!r} has data_offsets {_json(offsets)}; expected [begin, end], two integers"


def _json(value: object) -> str:
    return orjson.dumps(value).decode()


def _check_metadata(meta: object) -> None:
    if type(meta) is not dict:
        raise _invalid(f"__metadata__ must be an object of strings, got {_kind(meta)}")
    for key, value in meta.items():
        if type(value) is not str:
            raise _invalid(f"__metadata__ entry {key!r} is {_kind(value)}; expected a string")


def _entry_problem(name: str, entry: object) -> str:
    expected = "expected exactly dtype, shape and data_offsets"
    if type(entry) is not dict:
        return f"header entry {name!r} is {_kind(entry)}; expected an object with dtype, shape " \
               "and data_offsets"
    missing = [key for key in _ENTRY_KEYS if key not in entry]
    if missing:
        return f"array {name!r} lacks {', '.join(missing)}; {expected}"
    extra = next(key for key in entry if key not in _ENTRY_KEYS)
    return f"array {name!r} has an unexpected key {extra!r}; {expected}"


def _dtype_problem(name: str, code: object) -> str:
    if code == "BF16":
        return (f"array {name!r} has dtype BF16 (bfloat16), which numpy cannot read; "
                "send F32 or F64")
    return f"array {name!r} has dtype {_json(code)}; {_EXPECTED_DTYPES}"


def _check_tiling(spans: list[tuple[int, int, str]], data_len: int) -> None:
    """The arrays' byte ranges (sorted) must cover the data section back to back: as the
    safetensors library requires, so no byte is read twice or left unread."""
    done, previous = 0, None
    for begin, end, name in spans:
        if begin < done:
            raise _invalid(f"arrays {previous!r} and {name!r} overlap (their byte ranges end at "
                           f"{done} and begin at {begin}); each byte belongs to one array")
        if begin > done:
            raise _invalid(f"bytes {done} to {begin} of the data section belong to no array "
                           f"(a gap before {name!r}); the arrays must follow each other")
        done, previous = end, name
    if done != data_len:
        raise _invalid(f"the data section has {data_len - done} bytes after the last array "
                       f"(which ends at {done}); expected none")


def _encode_binary(values: dict, scalars: dict | None) -> bytes:
    """The safetensors layout, written with numpy: the header padded with spaces so the data
    section starts 8-byte aligned (as the library writes it), then each array's bytes, joined
    once without intermediate copies."""
    header: dict = {}
    if scalars:
        header["__metadata__"] = {k: json.dumps(v) for k, v in scalars.items()}
    arrays, offset = [], 0
    for name, value in values.items():
        arr = np.asarray(value)
        code = _CODES.get(arr.dtype)
        if code is None:  # big-endian, or not a float/int dtype
            little = arr.dtype.newbyteorder("<")
            code = _CODES.get(little)
            if code is None:
                raise TypeError(f"array {name!r} has dtype {arr.dtype}; only float and int "
                                "arrays can be encoded")
            arr = arr.astype(little)
        if not arr.flags.c_contiguous:  # not ascontiguousarray, which makes a 0-d array 1-d
            arr = np.ascontiguousarray(arr)
        header[name] = {"dtype": code, "shape": arr.shape,
                        "data_offsets": (offset, offset + arr.nbytes)}
        arrays.append(arr)
        offset += arr.nbytes
    text = orjson.dumps(header)
    pad = -len(text) % 8
    return b"".join((
        (len(text) + pad).to_bytes(8, "little"), text, b" " * pad, *arrays))


def encode_answer(values: dict, binary: bool, scalars: dict | None = None) -> tuple[bytes, str]:
    """Encode arrays (and small scalars) as the requested media type: (body, media type)."""
    if binary:
        return _encode_binary(values, scalars), BINARY
    doc = dict(scalars or {})
    doc.update(values)
    return orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY), JSON

