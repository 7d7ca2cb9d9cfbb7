"""The binary codec of request and answer bodies, without a server: it reads and writes what the
safetensors library and the client's codec write and read, bitwise; decoded arrays are read-only
views of the body; and every malformed body is refused with a message that says what is wrong."""

from __future__ import annotations

import json

import numpy as np
import pytest
import safetensors.numpy

from gradserve.errors import MalformedBody
from gradserve.wire import BINARY, _decode_binary, encode_answer
from gradserve_client._codec import decode_binary, encode_binary

RNG = np.random.default_rng(0)

SHAPES = {"vector": (7,), "column": (5, 1), "matrix": (3, 8), "stack": (4, 8, 3),
          "no-rows": (0, 8), "no-directions": (2, 3, 0), "scalar": ()}
DTYPES = [np.float64, np.float32, np.float16, np.int64, np.int32, np.int16, np.int8,
          np.uint64, np.uint32, np.uint16, np.uint8]
# What the client's codec writes (others it converts to float64).
CLIENT_DTYPES = [np.float64, np.float32, np.float16, np.int64, np.int32]


def _array(shape: tuple, dtype) -> np.ndarray:
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        # Every bit pattern of the float, signed zeros and subnormals included (no NaN: a NaN
        # compares unequal, and some dtypes' NaN payloads would not survive a float cast).
        values = RNG.standard_normal(shape) * RNG.choice([1e-300, 1e-3, 1.0, 1e30], shape)
        with np.errstate(over="ignore"):  # too large for float16: infinity, replaced below
            values = values.astype(dtype)
        return np.where(np.isfinite(values), values, dtype.type(-0.0))
    info = np.iinfo(dtype)
    return RNG.integers(info.min, info.max, shape, dtype=dtype, endpoint=True)


def _arrays(dtype) -> dict[str, np.ndarray]:
    return {name: _array(shape, dtype) for name, shape in SHAPES.items()}


def _assert_same(got: dict, expected: dict) -> None:
    assert set(got) == set(expected)
    for name, want in expected.items():
        assert got[name].dtype == want.dtype, name
        assert got[name].shape == want.shape, name
        np.testing.assert_array_equal(got[name], want, strict=True)
        # bitwise, so -0.0 and 0.0 differ
        assert got[name].tobytes() == np.ascontiguousarray(want).tobytes(), name


def _body(header: dict | bytes, data: bytes = b"") -> bytes:
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    return len(text).to_bytes(8, "little") + text + data


def _entry(dtype: str = "F64", shape: list | None = None, offsets: list | None = None) -> dict:
    return {"dtype": dtype, "shape": [1, 2] if shape is None else shape,
            "data_offsets": [0, 16] if offsets is None else offsets}


# --- round trips ------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("scalars", [None, {"version": 3, "status": 0, "note": "ok"}],
                         ids=["no-metadata", "metadata"])
def test_ours_to_safetensors(dtype, scalars):
    arrays = _arrays(dtype)
    body, media = encode_answer(arrays, True, scalars)
    assert media == BINARY
    _assert_same(safetensors.numpy.load(body), arrays)
    header_len = int.from_bytes(body[:8], "little")
    assert header_len % 8 == 0  # the data section starts 8-byte aligned
    header = json.loads(body[8:8 + header_len])
    expected = {k: json.dumps(v) for k, v in (scalars or {}).items()}
    assert header.get("__metadata__", {}) == expected


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("metadata", [None, {"version": "3"}], ids=["no-metadata", "metadata"])
def test_safetensors_to_ours(dtype, metadata):
    arrays = _arrays(dtype)
    _assert_same(_decode_binary(safetensors.numpy.save(arrays, metadata=metadata)), arrays)


@pytest.mark.parametrize("dtype", CLIENT_DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("scalars", [None, {"version": 12}], ids=["no-metadata", "metadata"])
def test_ours_to_client(dtype, scalars):
    arrays = _arrays(dtype)
    got, metadata = decode_binary(encode_answer(arrays, True, scalars)[0])
    _assert_same(got, arrays)
    assert metadata == {k: json.dumps(v) for k, v in (scalars or {}).items()}


@pytest.mark.parametrize("dtype", CLIENT_DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("metadata", [None, {"client": "x"}], ids=["no-metadata", "metadata"])
def test_client_to_ours(dtype, metadata):
    arrays = _arrays(dtype)
    # The client's codec writes a 0-d array as shape [1] (np.ascontiguousarray is at least 1-d).
    expected = {name: np.atleast_1d(arr) for name, arr in arrays.items()}
    _assert_same(_decode_binary(encode_binary(arrays, metadata)), expected)


def test_answers_keep_their_dtype_and_shape():
    pw, px = _array((4866, 1), np.float64), _array((64, 8), np.float32)
    got = safetensors.numpy.load(encode_answer({"pw": pw, "px": px}, True)[0])
    assert (got["pw"].dtype, got["pw"].shape) == (np.float64, (4866, 1))
    assert (got["px"].dtype, got["px"].shape) == (np.float32, (64, 8))


def test_non_contiguous_and_big_endian_arrays_are_written_as_their_values():
    base = _array((6, 4), np.float64)
    arrays = {"transposed": base.T, "strided": base[::2, 1:], "big": base.astype(">f8"),
              "big-int": np.arange(5, dtype=">i4")}
    got = safetensors.numpy.load(encode_answer(arrays, True)[0])
    for name, want in arrays.items():
        assert got[name].dtype == want.dtype.newbyteorder("<")
        np.testing.assert_array_equal(got[name], want)


def test_encoding_refuses_what_is_not_a_number():
    with pytest.raises(TypeError, match="only float and int"):
        encode_answer({"flags": np.array([True, False])}, True)


def test_json_answers_are_unchanged():
    body, media = encode_answer({"y": np.array([[1.5, 2.0]])}, False, {"version": 2})
    assert media == "application/json" and json.loads(body) == {"version": 2, "y": [[1.5, 2.0]]}


def test_no_arrays():
    assert _decode_binary(encode_answer({}, True)[0]) == {}
    assert _decode_binary(_body({"__metadata__": {"a": "b"}})) == {}


# --- decoded arrays are read-only views of the body ------------------------------------------

def test_decoded_arrays_are_read_only_views_of_the_body():
    body = encode_binary({"x": _array((64, 8), np.float64), "py": _array((64, 2), np.float64),
                          "w": _array((4866,), np.float64)})
    buffer = np.frombuffer(body, np.uint8)
    for name, arr in _decode_binary(body).items():
        assert arr.base is not None, name
        assert np.shares_memory(arr, buffer), name
        assert not arr.flags.writeable, name
        with pytest.raises(ValueError, match="read-only"):
            arr[...] = 0


def test_views_of_a_writable_buffer_are_read_only_too():
    body = bytearray(encode_binary({"x": np.ones((2, 8))}))
    arr = _decode_binary(body)["x"]
    assert not arr.flags.writeable
    assert np.shares_memory(arr, np.frombuffer(body, np.uint8))


def test_unaligned_arrays_are_read_as_they_are():
    # A hand-written header need not be padded: arrays may start at any byte.
    values = _array((3, 8), np.float64)
    body = _body(b'{"x":{"dtype":"F64","shape":[3,8],"data_offsets":[0,192]}}', values.tobytes())
    _assert_same(_decode_binary(body), {"x": values})


def test_empty_arrays_may_share_an_offset():
    body = _body({"a": _entry(shape=[0], offsets=[0, 0]), "b": _entry(shape=[0, 8], offsets=[0, 0]),
                  "c": _entry(shape=[1], offsets=[0, 8])}, bytes(8))
    got = _decode_binary(body)
    assert got["a"].shape == (0,) and got["b"].shape == (0, 8) and got["c"].shape == (1,)


def test_arrays_may_come_in_any_order_in_the_header():
    body = _body({"b": _entry(shape=[1], offsets=[8, 16]), "a": _entry(shape=[1], offsets=[0, 8])},
                 np.array([1.0, 2.0]).tobytes())
    got = _decode_binary(body)
    assert (got["a"][0], got["b"][0]) == (1.0, 2.0)


# --- refusals ----------------------------------------------------------------------------------

GOOD = encode_binary({"x": np.ones((2, 8)), "py": np.ones((2, 1))})

REFUSALS = [
    # (id, body, part of the message)
    ("too-short", b"\x01\x02", "needs at least 8 bytes, got 2"),
    ("header-beyond-body", (10**9).to_bytes(8, "little") + b"{}", "claims 1000000000 bytes"),
    ("only-prefix", GOOD[:8], "claims"),
    ("truncated-data", GOOD[:-9], "expected 0 <= begin <= end <= 135"),
    ("truncated-data-phrase", GOOD[:-9], f"not a valid {BINARY} payload"),
    ("header-not-json", _body(b"{{{{{"), "the header is not valid JSON"),
    ("header-not-utf8", _body(b'{"\xff": 1}'), "the header is not valid JSON"),
    ("header-nan", _body(b'{"__metadata__": {"a": NaN}}'), "the header is not valid JSON"),
    ("header-array", _body(b"[1, 2]"), "the header must be a JSON object, got an array"),
    ("header-string", _body(b'"x"'), "the header must be a JSON object, got a string"),
    ("metadata-not-object", _body({"__metadata__": ["a"]}), "__metadata__ must be an object of "
     "strings, got an array"),
    ("metadata-null", _body({"__metadata__": None}), "__metadata__ must be an object of strings, got null"),
    ("metadata-number", _body({"__metadata__": {"version": 3}}),
     "__metadata__ entry 'version' is a number; expected a string"),
    ("metadata-nested", _body({"__metadata__": {"a": {"b": "c"}}}),
     "__metadata__ entry 'a' is an object; expected a string"),
    ("entry-not-object", _body({"x": [1, 2]}), "header entry 'x' is an array; expected an object "
     "with dtype, shape and data_offsets"),
    ("missing-dtype", _body({"x": {"shape": [2], "data_offsets": [0, 16]}}, bytes(16)),
     "array 'x' lacks dtype; expected exactly dtype, shape and data_offsets"),
    ("missing-two", _body({"x": {"dtype": "F64"}}), "array 'x' lacks shape, data_offsets"),
    ("extra-key", _body({"x": {**_entry(), "strides": [8]}}, bytes(16)),
     "array 'x' has an unexpected key 'strides'; expected exactly dtype, shape and data_offsets"),
    ("unknown-dtype", _body({"x": _entry("C128")}, bytes(16)),
     'array \'x\' has dtype "C128"; expected a float or int dtype (F64, F32, F16'),
    ("complex-dtype", _body({"x": _entry("C64")}, bytes(16)), "expected a float or int dtype"),
    ("float8-dtype", _body({"x": _entry("F8_E4M3", offsets=[0, 2])}, bytes(2)),
     "has dtype \"F8_E4M3\"; expected a float or int dtype"),
    ("lowercase-dtype", _body({"x": _entry("f64")}, bytes(16)), "has dtype \"f64\"; expected"),
    ("dtype-not-string", _body({"x": _entry(["F64"])}, bytes(16)), 'has dtype ["F64"]; expected'),
    ("bf16", _body({"x": _entry("BF16", offsets=[0, 4])}, bytes(4)),
     "has dtype BF16 (bfloat16), which numpy cannot read; send F32 or F64"),
    ("bool", _body({"x": _entry("BOOL", offsets=[0, 2])}, b"\1\0"),
     'array \'x\' has dtype "BOOL"; expected a float or int dtype'),
    ("negative-shape", _body({"x": _entry(shape=[-1, 2])}, bytes(16)),
     "array 'x' has shape [-1,2]; expected a list of non-negative integers"),
    ("float-shape", _body({"x": _entry(shape=[1.0, 2])}, bytes(16)), "has shape [1.0,2]; expected"),
    ("bool-shape", _body({"x": _entry(shape=[True, 2])}, bytes(16)), "has shape [true,2]; expected"),
    ("string-shape", _body({"x": _entry(shape=["1", 2])}, bytes(16)), 'has shape ["1",2]; expected'),
    ("shape-not-list", _body({"x": _entry(shape=2)}, bytes(16)), "has shape 2; expected a list"),
    ("shape-numpy-cannot-hold", _body({"x": _entry(shape=[0, 2**63], offsets=[0, 0])}),
     "which numpy cannot hold"),
    ("too-many-axes", _body({"x": _entry(shape=[1] * 65, offsets=[0, 8])}, bytes(8)),
     "which numpy cannot hold"),
    ("offsets-one", _body({"x": _entry(offsets=[0])}, bytes(16)),
     "has data_offsets [0]; expected [begin, end], two integers"),
    ("offsets-three", _body({"x": _entry(offsets=[0, 8, 16])}, bytes(16)), "two integers"),
    ("offsets-float", _body({"x": _entry(offsets=[0, 16.0])}, bytes(16)),
     "has data_offsets [0,16.0]; expected [begin, end], two integers"),
    ("offsets-bool", _body({"x": _entry(shape=[1], offsets=[False, 8])}, bytes(8)), "two integers"),
    ("offsets-not-list", _body({"x": _entry(offsets={"begin": 0})}, bytes(16)), "two integers"),
    ("offsets-negative", _body({"x": _entry(offsets=[-16, 0])}, bytes(16)),
     "has data_offsets [-16, 0]; expected 0 <= begin <= end <= 16"),
    ("offsets-reversed", _body({"x": _entry(offsets=[16, 0])}, bytes(16)), "0 <= begin <= end <= 16"),
    ("offsets-beyond", _body({"x": _entry(offsets=[0, 1 << 40])}, bytes(16)),
     f"has data_offsets [0, {1 << 40}]; expected 0 <= begin <= end <= 16"),
    ("offsets-short-of-shape", _body({"x": _entry(shape=[1, 8], offsets=[0, 16])}, bytes(16)),
     "array 'x' has data_offsets [0, 16] (16 bytes); its shape [1, 8] of F64 needs 64"),
    ("offsets-beyond-shape", _body({"x": _entry(dtype="F32", shape=[2], offsets=[0, 16])}, bytes(16)),
     "its shape [2] of F32 needs 8"),
    ("shape-lies", _body({"x": _entry(shape=[1 << 30, 8], offsets=[0, 64])}, bytes(64)),
     "needs 68719476736"),
    ("overlap", _body({"a": _entry(shape=[2], offsets=[0, 16]), "b": _entry(shape=[2], offsets=[8, 24])},
                      bytes(24)),
     "arrays 'a' and 'b' overlap (their byte ranges end at 16 and begin at 8)"),
    ("same-range", _body({"a": _entry(shape=[1], offsets=[0, 8]), "b": _entry(shape=[1], offsets=[0, 8])},
                         bytes(8)), "arrays 'a' and 'b' overlap"),
    ("hole-between", _body({"a": _entry(shape=[1], offsets=[0, 8]), "b": _entry(shape=[1], offsets=[16, 24])},
                           bytes(24)),
     "bytes 8 to 16 of the data section belong to no array (a gap before 'b')"),
    ("hole-first", _body({"a": _entry(shape=[1], offsets=[8, 16])}, bytes(16)),
     "bytes 0 to 8 of the data section belong to no array (a gap before 'a')"),
    ("trailing-bytes", GOOD + b"\0" * 8,
     "the data section has 8 bytes after the last array (which ends at 144); expected none"),
    ("trailing-bytes-no-arrays", _body({}, b"\0"), "the data section has 1 bytes after the last array"),
]


@pytest.mark.parametrize("body, message", [c[1:] for c in REFUSALS], ids=[c[0] for c in REFUSALS])
def test_malformed_bodies_are_refused_with_what_was_wrong(body, message):
    with pytest.raises(MalformedBody) as info:
        _decode_binary(body)
    assert message in info.value.message


@pytest.mark.parametrize("body", [c[1] for c in REFUSALS], ids=[c[0] for c in REFUSALS])
def test_what_we_refuse_the_library_refuses_or_numpy_cannot_use(body):
    """We are at least as strict as the safetensors library: whatever it reads that we refuse
    is one of the stricter rules (exact keys, metadata not null, no non-numbers)."""
    try:
        loaded = safetensors.numpy.load(body)
    except Exception:  # noqa: BLE001 - any refusal of the library's is fine here
        return
    header = json.loads(body[8:8 + int.from_bytes(body[:8], "little")])
    entries = [v for k, v in header.items() if k != "__metadata__"]
    stricter = (header.get("__metadata__", {}) is None
                or any(set(v) != {"dtype", "shape", "data_offsets"} for v in entries)
                or any(arr.dtype.kind not in "fiu" for arr in loaded.values()))
    assert stricter, header


def test_a_header_over_100_mb_is_refused():
    size = 100_000_008
    body = size.to_bytes(8, "little") + b"{" + b" " * (size - 2) + b"}"
    with pytest.raises(MalformedBody, match=f"the header is {size} bytes; at most 100000000"):
        _decode_binary(body)
    with pytest.raises(Exception, match="too large"):
        safetensors.numpy.load(body)


def test_the_error_message_of_a_short_body_is_the_documented_one():
    with pytest.raises(MalformedBody, match=f"a {BINARY} body needs at least 8 bytes, got 0"):
        _decode_binary(b"")
