"""Bad input of every kind gets the right 4xx with a helpful message, and the service keeps
serving: after each bad request, a good one still succeeds."""

from __future__ import annotations

import json
import re
import socket

import httpx
import numpy as np
import pytest

from gradserve_client._codec import encode_binary

GOOD = {"x": [[0.1, 1000, 90000, 1000, 90, 760, 1400, 11000]], "py": [[1.0]]}
JSON_HEADERS = {"Content-Type": "application/json"}
BIN_HEADERS = {"Content-Type": "application/x-safetensors"}


def _json(doc) -> bytes:
    return json.dumps(doc).encode()


CASES = [
    # (id, path, body, headers, status, error type, message pattern)
    ("not-json", "/models/borehole/gradient", b"{x: [[1", JSON_HEADERS, 400, "MalformedBody", "not valid JSON"),
    ("nan-token", "/models/borehole/gradient", b'{"x": [[NaN, 1, 1, 1, 1, 1, 1, 1]], "py": [[1]]}',
     JSON_HEADERS, 400, "MalformedBody", "NaN and Infinity are not JSON"),
    ("infinity-token", "/models/borehole/evaluate", b'{"x": [[Infinity, 1, 1, 1, 1, 1, 1, 1]]}',
     JSON_HEADERS, 400, "MalformedBody", "not valid JSON"),
    ("overflow-number", "/models/borehole/evaluate", b'{"x": [[1e999, 1, 1, 1, 1, 1, 1, 1]]}',
     JSON_HEADERS, 400, "MalformedBody", "infinity"),
    ("huge-integer", "/models/borehole/evaluate", b'{"x": [[' + b"9" * 400 + b', 1, 1, 1, 1, 1, 1, 1]]}',
     JSON_HEADERS, 400, "MalformedBody", "not valid JSON"),
    ("not-an-object", "/models/borehole/evaluate", b"[1, 2]", JSON_HEADERS, 400, "MalformedBody", "must be a JSON object"),
    ("wrong-type", "/models/borehole/evaluate", _json({"x": "lots"}), JSON_HEADERS, 400, "MalformedBody",
     "field 'x' must be an array"),
    ("strings-in-array", "/models/borehole/evaluate", _json({"x": [["a"] * 8]}), JSON_HEADERS, 400,
     "MalformedBody", "rectangular array of numbers"),
    ("ragged", "/models/borehole/evaluate", _json({"x": [[1] * 8, [1] * 7]}), JSON_HEADERS, 400,
     "MalformedBody", "rectangular"),
    ("deeply-nested", "/models/borehole/evaluate", b'{"x": ' + b"[" * 5000 + b"]" * 5000 + b"}",
     JSON_HEADERS, 400, "MalformedBody", "."),
    ("unknown-field", "/models/borehole/gradient", _json({**GOOD, "dxx": [[1]]}), JSON_HEADERS, 400,
     "MalformedBody", "unknown field 'dxx'; expected fields: w, x, py"),
    ("missing-field", "/models/borehole/gradient", _json({"x": GOOD["x"]}), JSON_HEADERS, 400,
     "MalformedBody", "field 'py' is required"),
    ("wrong-columns", "/models/borehole/evaluate", _json({"x": [[1, 2, 3]]}), JSON_HEADERS, 422,
     "InvalidInput", r"x must have shape \(n, 8\) with n >= 1 .*got shape \(1, 3\)"),
    ("empty-batch", "/models/borehole/evaluate", _json({"x": []}), JSON_HEADERS, 422, "InvalidInput",
     r"got shape \(0,\)"),
    ("wrong-p", "/models/borehole/gradient", _json({**GOOD, "w": [1.0, 2.0]}), JSON_HEADERS, 422,
     "InvalidInput", r"w must have shape \(1377, 1\) or \(1377,\); got shape \(2,\)"),
    ("py-rows", "/models/borehole/gradient", _json({**GOOD, "py": [[1.0], [2.0]]}), JSON_HEADERS, 422,
     "InvalidInput", r"py must have as many rows as x \(1\)"),
    ("content-type", "/models/borehole/evaluate", _json(GOOD), {"Content-Type": "text/csv"}, 415,
     "UnsupportedMediaType", "send application/json or application/x-safetensors"),
    ("unknown-model", "/models/nope/evaluate", _json(GOOD), JSON_HEADERS, 404, "ModelNotFound",
     "no model named 'nope' \\(models: borehole, classifier, compression\\)"),
    ("traversal", "/models/..%2F..%2Fetc/evaluate", _json(GOOD), JSON_HEADERS, 404, None, "."),
    ("truncated-binary", "/models/borehole/evaluate", encode_binary({"x": np.ones((2, 8))})[:-9],
     BIN_HEADERS, 400, "MalformedBody", "not a valid application/x-safetensors payload"),
    ("lying-binary-header", "/models/borehole/evaluate", (10**9).to_bytes(8, "little") + b"{}",
     BIN_HEADERS, 400, "MalformedBody", "claims 1000000000 bytes"),
    ("nan-binary", "/models/borehole/evaluate", encode_binary({"x": np.full((1, 8), np.nan)}),
     BIN_HEADERS, 422, "InvalidInput", r"x must be finite; x\[0, 0\] is nan"),
    ("bad-if-match", "/models/borehole/weights", _json({"weights": [1.0]}),
     {**JSON_HEADERS, "If-Match": "yesterday"}, 422, "InvalidInput", "If-Match must be a weights version"),
    ("unknown-route", "/models/borehole/hessian", _json(GOOD), JSON_HEADERS, 404, "NotFound", "no route"),
    ("jacobian-wrt", "/models/borehole/jacobian?wrt=q", _json({"x": GOOD["x"]}), JSON_HEADERS, 422,
     "InvalidInput", "wrt must be 'x' or 'w', got 'q'"),
    ("jacobian-misspelt-query", "/models/borehole/jacobian?wr=w", _json({"x": GOOD["x"]}),
     JSON_HEADERS, 422, "InvalidInput",
     r"unknown query parameter 'wr' for /models/\{name\}/jacobian; it takes wrt"),
    ("jacobian-empty-query-name", "/jacobian?wrt=w&=null", _json({"x": [[0.1, 0.2]]}),
     JSON_HEADERS, 422, "InvalidInput", "unknown query parameter ''"),
    ("query-on-gradient", "/models/borehole/gradient?verbose=1", _json(GOOD), JSON_HEADERS, 422,
     "InvalidInput", r"unknown query parameter 'verbose' for /models/\{name\}/gradient; it takes none"),
    ("jacobian-too-large", "/models/borehole/jacobian?wrt=w", _json({"x": GOOD["x"] * 100}),
     JSON_HEADERS, 413, "PayloadTooLarge", "would hold 137700 numbers.*GRADSERVE_MAX_ANSWER_ELEMENTS"),
    ("hessian-no-direction", "/models/borehole/hessian_vector", _json(GOOD), JSON_HEADERS, 422,
     "InvalidInput", "needs dw, dx or both"),
    ("directions-axes", "/models/borehole/forward_derivative",
     _json({"x": GOOD["x"], "dx": [[[1.0, 2.0]] * 7]}), JSON_HEADERS, 422, "InvalidInput",
     r"dx must have shape \(1, 8, r\) with r >= 1 .*got shape \(1, 7, 2\)"),
    ("directions-count", "/models/borehole/gradient",
     _json({"x": GOOD["x"], "py": [[[]]]}), JSON_HEADERS, 422, "InvalidInput",
     r"py must have shape \(1, 1, r\) with r >= 1"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_request_gets_a_clear_4xx_and_service_keeps_serving(live_server, case):
    _, path, body, headers, status, type_, pattern = case
    method = "PUT" if path.endswith("/weights") else "POST"
    with httpx.Client(base_url=live_server.url, timeout=30) as http:
        response = http.request(method, path, content=body, headers=headers)
        assert response.status_code == status, response.text
        assert response.headers["content-type"] == "application/json"
        error = response.json()["error"]
        if type_:
            assert error["type"] == type_
        assert re.search(pattern, error["message"]), error["message"]
        after = http.post("/models/borehole/gradient", json=GOOD)
        assert after.status_code == 200 and len(after.json()["pw"]) == 1377


def _raw_request(server, head: bytes, body: bytes, timeout: float = 10) -> bytes:
    """Send bytes as they are (lying headers included) and read until the answer is complete
    (or nothing more comes within ``timeout``)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as sock:
        sock.sendall(head + body)
        data = b""
        try:
            while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < _length(data):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        except TimeoutError:
            pass
    return data


def _length(data: bytes) -> int:
    for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":")[1])
    return 0


def test_huge_declared_body_is_refused_before_it_is_read(live_server):
    head = (b"POST /models/borehole/evaluate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
            b"\r\nContent-Length: 1099511627776\r\n\r\n")
    answer = _raw_request(live_server, head, b'{"x": [[1')
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b'"type":"PayloadTooLarge"' in answer and b"GRADSERVE_MAX_BODY_BYTES" in answer
    assert httpx.get(f"{live_server.url}/healthz").status_code == 200


def test_short_body_for_its_declared_length_is_not_a_500(live_server):
    head = (b"POST /models/borehole/evaluate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
            b"\r\nContent-Length: 500\r\n\r\n")
    # The server waits for the bytes it was promised (HTTP says so); it must neither crash nor
    # answer with a 5xx, and other clients are served meanwhile.
    answer = _raw_request(live_server, head, b'{"x": [[1, 2, 3, 4, 5, 6, 7, 8]]}', timeout=2)
    assert not answer.startswith(b"HTTP/1.1 5"), answer[:200]
    assert httpx.get(f"{live_server.url}/healthz").status_code == 200


@pytest.mark.parametrize("method, path", [("DELETE", "/models/borehole/weights"),
                                          ("GET", "/models/borehole/gradient"),
                                          ("PUT", "/evaluate")])
def test_method_not_allowed_uses_the_error_shape(live_server, method, path):
    r = httpx.request(method, f"{live_server.url}{path}")
    assert r.status_code == 405 and r.json()["error"]["type"] == "MethodNotAllowed"
    assert "POST" in r.headers["allow"] or "GET" in r.headers["allow"]


def test_health_ready_metrics(live_server):
    with httpx.Client(base_url=live_server.url) as http:
        assert http.get("/healthz").json() == {"status": "ok"}
        ready = http.get("/readyz").json()
        assert ready["status"] == "ready" and ready["models"] == ["borehole", "classifier", "compression"]
        http.post("/models/classifier/evaluate", json={"x": [[0.1, 0.2]]})
        text = http.get("/metrics").text
        assert 'gradserve_http_requests_total{route="/models/{name}/evaluate",status="200"}' in text
        assert 'gradserve_compute_seconds_count{method="evaluate",model="classifier"}' in text


def test_models_listing_matches_issue_contract(live_server):
    models = httpx.get(f"{live_server.url}/models").json()["models"]
    borehole = next(m for m in models if m["name"] == "borehole")
    for key in ("name", "kind", "version", "dtype", "n_inputs", "n_outputs", "n_weights",
                "inputs", "outputs", "buckets"):
        assert key in borehole
    assert borehole["inputs"][0].keys() == {"name", "min", "max"}
    assert borehole["n_inputs"] == 8 and borehole["n_outputs"] == 1
