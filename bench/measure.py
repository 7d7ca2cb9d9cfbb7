"""What the benchmark measures: request bodies for each server, load runs (wrk or the Python
generator), latency through the Python clients, and the in-process floor.

Every figure is a median and a p99 over individual calls, in milliseconds; throughput is answers
per second over a closed loop of N connections, each with one request in flight.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import httpx
import numpy as np

from timing import time_calls

HERE = Path(__file__).resolve().parent
BINARY, JSON = "application/x-safetensors", "application/json"
METHODS = ("evaluate", "forward_derivative", "gradient")


def arrays(method: str, n: int, w: np.ndarray) -> dict[str, np.ndarray]:
    """The arrays of one call: every client sends its own point w, as an optimiser does."""
    import peer_model

    d = peer_model.data(n)
    if method == "evaluate":
        return {"x": d["x"], "w": w}
    if method == "forward_derivative":
        return {"w": w, "dw": d["dw"], "x": d["x"], "dx": d["dx"]}
    return {"w": w, "x": d["x"], "py": d["py"]}


# --- bodies: (path, content type, accept, body) ------------------------------------------------

def ours(method: str, n: int, encoding: str, w: np.ndarray) -> tuple[str, str, str, bytes]:
    from gradserve_client._codec import encode_binary, encode_json

    a = arrays(method, n, w)
    if encoding == "binary":
        return f"/models/mlp/{method}", BINARY, BINARY, encode_binary(a)
    return f"/models/mlp/{method}", JSON, JSON, encode_json(a)


def distinct_w(w: np.ndarray, count: int = 64) -> list[tuple[str, str, str, bytes]]:
    """Gradient bodies at n = 1, each at its own point near ``w``: one optimisation client each."""
    rng = np.random.default_rng(7)
    return [ours("gradient", 1, "binary", w * (1 + 1e-3 * rng.standard_normal(w.shape)))
            for _ in range(count)]


def umbridge_body(method: str, n: int, w: np.ndarray) -> tuple[str, str, str, bytes]:
    a = arrays(method, n, w)
    doc = {"name": "mlp", "input": [np.concatenate([a["x"].ravel(), w]).tolist()], "config": {"n": n}}
    if method == "evaluate":
        return "/Evaluate", JSON, "-", json.dumps(doc).encode()
    doc.update(outWrt=0, inWrt=0)
    if method == "forward_derivative":
        doc["vec"] = np.concatenate([a["dx"].ravel(), a["dw"]]).tolist()
        return "/ApplyJacobian", JSON, "-", json.dumps(doc).encode()
    doc["sens"] = a["py"].ravel().tolist()
    return "/Gradient", JSON, "-", json.dumps(doc).encode()


def _b64(a: np.ndarray) -> dict:
    a = np.ascontiguousarray(a, dtype=np.float64)
    return {"object_type": "array", "shape": list(a.shape), "dtype": "float64",
            "data": {"buffer": base64.b64encode(a.tobytes()).decode("ascii"), "encoding": "base64"}}


def tesseract_body(method: str, n: int, w: np.ndarray) -> tuple[str, str, str, bytes]:
    """Base64 arrays both ways: Tesseract's fastest encoding."""
    a = arrays(method, n, w)
    doc: dict = {"inputs": {"x": _b64(a["x"]), "w": _b64(w)}}
    path = "/apply"
    if method == "forward_derivative":
        path = "/jacobian_vector_product"
        doc.update(jvp_inputs=["x", "w"], jvp_outputs=["y"],
                   tangent_vector={"x": _b64(a["dx"]), "w": _b64(a["dw"])})
    elif method == "gradient":
        path = "/vector_jacobian_product"
        doc.update(vjp_inputs=["x", "w"], vjp_outputs=["y"], cotangent_vector={"y": _b64(a["py"])})
    return path, JSON, "application/json+base64", json.dumps(doc).encode()


def check_answer(server: str, url: str, body: tuple, method: str, expected) -> None:
    """Send ``body`` once and compare the answer with the in-process result (first calls also
    compile, on the peers)."""
    path, ctype, accept, data = body
    headers = {"Content-Type": ctype} | ({"Accept": accept} if accept != "-" else {})
    r = httpx.post(url + path, content=data, headers=headers, timeout=300)
    if r.status_code != 200:
        raise RuntimeError(f"{server} {path}: HTTP {r.status_code}: {r.text[:300]}")
    got = _decode(server, r, method)
    for g, e in zip(got, expected if isinstance(expected, tuple) else (expected,), strict=True):
        if not np.allclose(np.asarray(g).reshape(np.shape(e)), e, rtol=1e-10, atol=1e-12):
            raise AssertionError(f"{server} {method}: the answer differs from the model's")


def _decode(server: str, r: httpx.Response, method: str) -> tuple:
    if server == "umbridge":
        out = np.asarray(r.json()["output"], dtype=np.float64).ravel()
        if method == "gradient":
            n8 = out.size - 4866
            return out[n8:].reshape(-1, 1), out[:n8].reshape(-1, 8)
        return (out.reshape(-1, 2),)
    if server == "tesseract":
        doc = r.json()
        dec = {k: np.frombuffer(base64.b64decode(v["data"]["buffer"]), dtype=v["dtype"]).reshape(v["shape"])
               for k, v in doc.items()}
        return (dec["w"].reshape(-1, 1), dec["x"]) if method == "gradient" else (dec["y"],)
    from gradserve_client._base import decode_answer

    doc = decode_answer(r)
    if method == "gradient":
        return np.asarray(doc["pw"]).reshape(-1, 1), np.asarray(doc["px"])
    return (np.asarray(doc["y" if method == "evaluate" else "dy"]),)


# --- load ----------------------------------------------------------------------------------------

class Load:
    """Closed-loop load: wrk with ``wrk.lua`` when installed, else ``loadgen.py``."""

    def __init__(self, work: Path, use_wrk: bool = True):
        self.wrk = shutil.which("wrk") if use_wrk else None
        self.files = work / "bodies"
        self.files.mkdir(parents=True, exist_ok=True)
        self.name = "wrk (Lua script, 1 thread)" if self.wrk else "bench/loadgen.py (asyncio)"

    def _file(self, data: bytes) -> str:
        path = self.files / (hashlib.sha1(data).hexdigest() + ".bin")
        if not path.exists():
            path.write_bytes(data)
        return str(path)

    def run(self, url: str, bodies: list[tuple], connections: int, seconds: int,
            method: str = "POST", pid: int | None = None) -> dict:
        """Answers/s, latency, and with ``pid`` the server's CPU time per answer (all its
        threads): a figure a busy machine disturbs much less than wall time."""
        path, ctype, accept = bodies[0][:3]
        files = [self._file(b[3]) for b in bodies] if ctype != "-" else []
        args = [method, path, ctype, accept, *files]
        if self.wrk:
            cmd = [self.wrk, "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "60s",
                   "-s", str(HERE / "wrk.lua"), url, "--", *args]
        else:
            u = urlparse(url)
            cmd = [sys.executable, str(HERE / "loadgen.py"), u.hostname, str(u.port),
                   str(connections), str(seconds), *args]
        cpu = process_cpu(pid)
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 120)
        cpu = process_cpu(pid) - cpu
        line = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
        if out.returncode or not line:
            raise RuntimeError(f"load generator failed ({out.returncode}): {out.stdout[-500:]} {out.stderr[-500:]}")
        r = json.loads(line[-1])
        return {"rps": r["requests"] / r["duration_s"], "median_ms": r["p50_us"] / 1e3,
                "p99_ms": r["p99_us"] / 1e3, "count": r["requests"], "errors": r["errors"],
                "connections": connections,
                "cpu_us": 1e6 * cpu / r["requests"] if pid and r["requests"] else None}


def process_cpu(pid: int | None) -> float:
    """Seconds of CPU (user + system) used so far by ``pid``, its threads and its descendants
    (a server's worker processes); 0 without a pid."""
    if not pid:
        return 0.0
    stats = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            stats[int(entry)] = (int(fields[1]), int(fields[11]) + int(fields[12]))
    family, grew = {pid}, True
    while grew:
        grew = False
        for child, (parent, _) in stats.items():
            if parent in family and child not in family:
                family.add(child)
                grew = True
    return sum(stats[p][1] for p in family if p in stats) / os.sysconf("SC_CLK_TCK")


# --- Python clients and the floor ----------------------------------------------------------------

def python_client(url: str, method: str, n: int, encoding: str, w: np.ndarray, reps: int) -> dict:
    from gradserve_client import Client

    with Client(url, encoding=encoding, timeout=300) as client:
        return time_calls(method_call(client.model("mlp"), method, arrays(method, n, w)), reps,
                          warm=min(5, reps))


def method_call(model, method: str, a: dict):
    """A no-argument call of ``method`` on ``model`` (in process or a client handle)."""
    if method == "evaluate":
        return lambda: model.evaluate(a["x"], a["w"])
    if method == "forward_derivative":
        return lambda: model.forward_derivative(a["w"], a["dw"], a["x"], a["dx"])
    return lambda: model.gradient(a["w"], a["x"], a["py"])


def peer_clients(python: Path, peer: str, url: str, cases: list) -> dict:
    out = subprocess.run([str(python), str(HERE / "peers" / "client_latency.py"), peer, url,
                          json.dumps(cases)], capture_output=True, text=True, timeout=1200)
    if out.returncode:
        raise RuntimeError(f"{peer} client failed: {out.stderr[-800:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def floor(model, method: str, n: int, w: np.ndarray, reps: int) -> dict:
    """The engine called directly, numpy in and out: what any server must at least spend."""
    return time_calls(method_call(model, method, arrays(method, n, w)), reps, warm=20)
