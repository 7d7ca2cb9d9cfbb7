"""A battery of hostile input against a real server process: each request gets a 4xx, the
process stays healthy, its memory stays bounded, and nothing is written outside the repository.

Requests go out as raw bytes on a socket, so that what is sent is exactly what is written here
(an HTTP library would normalise ``..`` in paths and fix lying lengths).
"""

from __future__ import annotations

import json
import socket
import time

import httpx
import numpy as np
import pytest

from gradserve.repository import ModelRepository
from gradserve_client._codec import encode_binary
from hardening_kit import bearer, key_entries, rss_kib, secret, tiny_model
from live import LiveServer, copy_demo_repository

BOREHOLE = [0.1, 1000, 90000, 1000, 90, 760, 1400, 11000]
TIMEOUT = 2  # the server's request timeout in this module: lying lengths cost that much
ROUNDS = 3


def _json(doc) -> bytes:
    return json.dumps(doc).encode()


def _binary_header(header: dict, data: bytes = b"") -> bytes:
    text = json.dumps(header).encode()
    return len(text).to_bytes(8, "little") + text + data


def _cases():
    """(id, method, path, body, content type). Every one must get a 4xx."""
    ev, gr, wt = "/models/borehole/evaluate", "/models/borehole/gradient", "/models/tiny/weights"
    J, B = "application/json", "application/x-safetensors"
    yield "deep-arrays", "POST", ev, b'{"x": ' + b"[" * 200_000 + b"]" * 200_000 + b"}", J
    yield "deep-objects", "POST", ev, b'{"x": ' + b'{"a": ' * 50_000 + b"1" + b"}" * 50_001, J
    yield "deep-unclosed", "POST", ev, b'{"x": ' + b"[" * 500_000, J
    yield "overflow-number", "POST", ev, b'{"x": [[1e999, 1, 1, 1, 1, 1, 1, 1]]}', J
    yield "negative-overflow", "POST", ev, b'{"x": [[-1e999, 1, 1, 1, 1, 1, 1, 1]]}', J
    yield "huge-integer", "POST", ev, b'{"x": [[' + b"9" * 100_000 + b", 1, 1, 1, 1, 1, 1, 1]]}", J
    yield "huge-finite-overflows", "POST", "/models/tiny/forward_derivative", _json(
        {"x": [[0.5, 0.5]], "dw": [1.7e308] * 17}), J
    for token in (b"NaN", b"Infinity", b"-Infinity", b"nan", b"inf"):
        yield f"token-{token.decode()}", "POST", ev, b'{"x": [[' + token + b', 1, 1, 1, 1, 1, 1, 1]]}', J
    for name, value in [("string", "lots"), ("number", 3), ("object", {"a": 1}), ("bool", True),
                        ("strings", [["a"] * 8]), ("bools", [[True] * 8]), ("nulls", [[None] * 8]),
                        ("mixed", [[1, "2", 3, 4, 5, 6, 7, 8]]), ("bool-and-numbers", [[True, 1, 1, 1, 1, 1, 1, 1]])]:
        yield f"wrong-type-{name}", "POST", ev, _json({"x": value}), J
    for name, doc in [("columns", {"x": [[1, 2, 3]]}), ("ragged", {"x": [BOREHOLE, BOREHOLE[:7]]}),
                      ("3d", {"x": [[BOREHOLE]]}), ("empty", {"x": []}), ("empty-row", {"x": [[]]}),
                      ("scalar-array", {"x": [1.0]})]:
        yield f"shape-{name}", "POST", ev, _json(doc), J
    yield "shape-py-rows", "POST", gr, _json({"x": [BOREHOLE], "py": [[1.0], [2.0]]}), J
    yield "shape-w", "POST", gr, _json({"x": [BOREHOLE], "py": [[1.0]], "w": [1.0, 2.0]}), J
    yield "shape-dw", "POST", "/models/borehole/forward_derivative", _json({"x": [BOREHOLE], "dw": [[1.0]]}), J
    yield "shape-weights", "PUT", wt, _json({"weights": [1.0] * 16}), J
    yield "nonfinite-weights-binary", "PUT", wt, encode_binary({"weights": np.full((17, 1), np.inf)}), B
    yield "unknown-field", "POST", gr, _json({"x": [BOREHOLE], "py": [[1.0]], "pyy": [[1.0]]}), J
    yield "unknown-field-only", "POST", ev, _json({"__proto__": [[1]]}), J
    yield "not-an-object", "POST", ev, b"[[1, 2]]", J
    yield "invalid-utf8", "POST", ev, b'{"x": [[\xff\xfe]]}', J
    yield "empty-body", "POST", ev, b"", J
    yield "rows-over-limit", "POST", "/models/tiny/evaluate", _json({"x": [[0.0, 0.0]] * 5001}), J
    good = encode_binary({"x": np.ones((4, 8))})
    yield "binary-truncated", "POST", ev, good[:-5], B
    yield "binary-only-prefix", "POST", ev, good[:8], B
    yield "binary-short", "POST", ev, b"\x01\x02", B
    yield "binary-header-claims-too-much", "POST", ev, (2**62).to_bytes(8, "little") + b"{}", B
    yield "binary-header-not-json", "POST", ev, (5).to_bytes(8, "little") + b"{{{{{", B
    yield "binary-offsets-beyond", "POST", ev, _binary_header(
        {"x": {"dtype": "F64", "shape": [1, 8], "data_offsets": [0, 1 << 40]}}, b"\0" * 64), B
    yield "binary-shape-lies", "POST", ev, _binary_header(
        {"x": {"dtype": "F64", "shape": [1 << 30, 8], "data_offsets": [0, 64]}}, b"\0" * 64), B
    yield "binary-bool-dtype", "POST", ev, _binary_header(
        {"x": {"dtype": "BOOL", "shape": [1, 8], "data_offsets": [0, 8]}}, b"\1" * 8), B
    yield "binary-unknown-dtype", "POST", ev, _binary_header(
        {"x": {"dtype": "C128", "shape": [1, 8], "data_offsets": [0, 128]}}, b"\0" * 128), B
    yield "content-type-lies", "POST", ev, encode_binary({"x": np.ones((1, 8))}), J
    yield "content-type-unknown", "POST", ev, _json({"x": [BOREHOLE]}), "text/csv"
    yield "body-over-limit", "POST", ev, b'{"x": [[' + b"1, " * 400_000 + b"1]]}", J
    yield "restore-huge-version", "POST", "/models/tiny/versions/99999999999999999999999/restore", b"", J
    yield "restore-negative-version", "POST", "/models/tiny/versions/-1/restore", b"", J
    for path in ("/models/../../etc/passwd/weights", "/models/..%2F..%2Fetc%2Fpasswd/weights",
                 "/models/%2e%2e/weights", "/models/%2e%2e%2f%2e%2e%2ftmp/weights",
                 "/models/%252e%252e%252f/weights", "/models/..%5C..%5Cwindows/weights",
                 "/models/tiny%00/weights", "/models/.tmp-evil/weights", "/models/tiny/../../weights2",
                 "/models/%EF%BC%8E%EF%BC%8E/weights", "/models//weights", "/models/./weights"):
        yield f"traversal {path}", "PUT", path, _json({"weights": [1.0] * 17}), J
        yield f"traversal-get {path}", "GET", path, b"", J


CASES = list(_cases())


def _send(server, raw: bytes, timeout: float = 10) -> tuple[int, bytes, bytes]:
    """Send raw bytes; (status, head, body) of the answer (0 if none)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as sock:
        sock.sendall(raw)
        data = b""
        try:
            while True:
                head, sep, body = data.partition(b"\r\n\r\n")
                if sep and len(body) >= _length(head):
                    break
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        except (TimeoutError, ConnectionResetError):
            pass
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1]) if head.startswith(b"HTTP/1.1 ") else 0
    return status, head, body


def _length(head: bytes) -> int:
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":")[1])
    return 0


def _request(method: str, path: str, body: bytes, content_type: str, extra: bytes = b"") -> bytes:
    auth = f"Authorization: Bearer {secret('all')}\r\n".encode()
    return (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n").encode() + auth + extra + b"Connection: close\r\n\r\n" + body


def _files(root) -> set:
    return {p for p in root.rglob("*")}


@pytest.fixture(scope="module")
def hostile_server(tmp_path_factory):
    base = tmp_path_factory.mktemp("hostile")
    repo = copy_demo_repository(base / "models")
    tiny = tiny_model()
    ModelRepository(repo).write("tiny", tiny.spec, tiny.get_weights())
    server = LiveServer(repo, env={
        "GRADSERVE_API_KEYS": key_entries(), "GRADSERVE_MAX_BODY_BYTES": str(1 << 20),
        "GRADSERVE_MAX_ROWS": "5000", "GRADSERVE_REQUEST_TIMEOUT": str(TIMEOUT)}).start()
    server.base = base
    yield server
    server.stop()


def _healthy(server) -> None:
    with httpx.Client(base_url=server.url, headers=bearer("all"), timeout=30) as http:
        assert http.get("/healthz").status_code == 200
        r = http.post("/models/borehole/gradient", json={"x": [BOREHOLE], "py": [[1.0]]})
        assert r.status_code == 200 and len(r.json()["pw"]) == 1377


@pytest.mark.slow
def test_hostile_battery_gets_4xx_and_the_service_survives(hostile_server):
    base = hostile_server.base
    outside_before = _files(base) - _files(base / "models")
    rss, statuses = [], {}
    for round_ in range(ROUNDS):
        for case_id, method, path, body, content_type in CASES:
            status, head, answer = _send(hostile_server, _request(method, path, body, content_type))
            assert 400 <= status < 500, (case_id, head[:300], answer[:300])
            statuses[status] = statuses.get(status, 0) + 1
            if b"application/json" in head:
                assert set(json.loads(answer)["error"]) >= {"type", "message"}, case_id
            _healthy(hostile_server)
        rss.append(rss_kib(hostile_server.process.pid))
    outside_after = _files(base) - _files(base / "models")
    assert {p for p in outside_after - outside_before if not p.name.startswith("server-")} == set()
    assert not any(p.name.startswith(("etc", "passwd", "weights2", "windows", "tmp", "evil"))
                   for p in _files(base / "models"))
    # memory: bounded overall, and no growth from round to round (a leak would show)
    assert max(rss) < 1_500_000, rss
    assert rss[-1] - rss[0] < 100_000, rss
    print(f"\nhostile battery: {len(CASES)} cases x {ROUNDS} rounds, answers {sorted(statuses.items())}, "
          f"RSS KiB per round {rss}")


def test_lying_lengths_and_framing(hostile_server):
    good = _json({"x": [BOREHOLE]})
    head = (b"POST /models/borehole/evaluate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Authorization: Bearer {secret('all')}\r\n".encode())
    # promises more than it sends: the body never completes, 408 after the request timeout
    start = time.monotonic()
    status, _, answer = _send(hostile_server, head + b"Content-Length: 500\r\n\r\n" + good)
    assert status == 408 and json.loads(answer)["error"]["type"] == "BodyTimeout"
    assert time.monotonic() - start < TIMEOUT + 5
    # sends more than it promises: the rest is read as a next request, which is garbage
    status, _, _ = _send(hostile_server, head + b"Content-Length: 10\r\n\r\n" + good)
    assert 400 <= status < 500
    for framing in (b"Content-Length: abc\r\n\r\n" + good,
                    b"Content-Length: -5\r\n\r\n" + good,
                    b"Content-Length: 1099511627776\r\n\r\n" + good,
                    b"Content-Length: 5\r\nContent-Length: 50\r\n\r\n" + good,
                    b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\nzz\r\n" + good,
                    b"Transfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n" + good):
        status, head_, answer = _send(hostile_server, head + framing)
        assert 400 <= status < 500, (framing[:80], head_, answer[:200])
    # a header block far too large
    status, _, _ = _send(hostile_server, head + b"X-Junk: " + b"a" * 200_000 + b"\r\n\r\n")
    assert status == 0 or 400 <= status < 500
    _healthy(hostile_server)


def test_odd_headers(hostile_server):
    with httpx.Client(base_url=hostile_server.url, headers=bearer("all"), timeout=30) as http:
        url = "/models/tiny/weights"
        for if_match in ('"-1"', '"99999999999999999999999"', "W/", '"1", "2"', "\u00e9"):
            r = http.put(url, json={"weights": [0.5] * 17}, headers={"If-Match": if_match.encode("utf-8")})
            assert 400 <= r.status_code < 500, (if_match, r.text)
        r = http.post("/models/tiny/evaluate", json={"x": [[0.0, 0.0]]}, headers={"Accept": "*/*;q=x"})
        assert r.status_code == 200
        r = http.post("/models/tiny/evaluate", json={"x": [[0.0, 0.0]]},
                      headers={"Content-Type": "application/json; charset=latin-1"})
        assert r.status_code == 200
    _healthy(hostile_server)
