"""Array encodings of the gradserve API, with numpy alone.

Binary: the safetensors layout (``application/x-safetensors``): an unsigned 64-bit little-endian
header length N, N bytes of JSON header ``{"name": {"dtype": "F64", "shape": [...],
"data_offsets": [begin, end]}, "__metadata__": {...}}``, then the raw little-endian bytes.
JSON: nested lists; Python's float repr round-trips float64 exactly, so JSON is lossless too.
"""

from __future__ import annotations

import json

import numpy as np

from ._errors import ProtocolError

__all__ = ["BINARY", "JSON", "encode_binary", "decode_binary", "encode_json", "decode_json"]

BINARY = "application/x-safetensors"
JSON = "application/json"
_DTYPES = {"F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"),
           "I64": np.dtype("<i8"), "I32": np.dtype("<i4")}
_CODES = {v: k for k, v in _DTYPES.items()}


def encode_binary(arrays: dict[str, np.ndarray], metadata: dict[str, str] | None = None) -> bytes:
    header: dict = {}
    if metadata:
        header["__metadata__"] = metadata
    offset, blobs = 0, []
    for name, arr in arrays.items():
        arr = np.ascontiguousarray(arr)
        if arr.dtype.newbyteorder("<") not in _CODES:
            arr = arr.astype("<f8")
        arr = arr.astype(arr.dtype.newbyteorder("<"), copy=False)
        header[name] = {"dtype": _CODES[arr.dtype], "shape": list(arr.shape),
                        "data_offsets": [offset, offset + arr.nbytes]}
        blobs.append(arr)  # join reads its buffer: no copy before the one join
        offset += arr.nbytes
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the data section starts 8-byte aligned
    return b"".join([len(text).to_bytes(8, "little"), text, *blobs])


def decode_binary(body: bytes) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """(arrays, metadata) of a binary body."""
    try:
        size = int.from_bytes(body[:8], "little")
        header = json.loads(body[8:8 + size])
        data = memoryview(body)[8 + size:]
        metadata = header.pop("__metadata__", None) or {}
        arrays = {}
        for name, info in header.items():
            dtype = _DTYPES[info["dtype"]]
            begin, end = info["data_offsets"]
            if not 0 <= begin <= end <= len(data):
                raise ValueError(f"{name}: data offsets out of range")
            arrays[name] = np.frombuffer(data[begin:end], dtype=dtype).reshape(info["shape"]).copy()
    except (ValueError, KeyError, TypeError) as exc:
        raise ProtocolError(f"the server's binary answer could not be decoded ({exc})") from None
    return arrays, metadata


def encode_json(arrays: dict[str, np.ndarray]) -> bytes:
    return json.dumps({k: np.asarray(v, dtype=np.float64).tolist() for k, v in arrays.items()},
                      allow_nan=False).encode()


def decode_json(body: bytes) -> dict:
    try:
        return json.loads(body)
    except ValueError as exc:
        raise ProtocolError(f"the server's answer is not JSON ({exc})") from None
