"""Latency per call through a peer's own Python client (run in that peer's environment).

    python client_latency.py umbridge|tesseract URL CASES_JSON

CASES_JSON: [[method, n, reps], ...], method one of evaluate, forward_derivative, gradient.
Prints one JSON object: {"method/n": {"median_ms", "p99_ms", "count", "client"}}. For Tesseract
both of its client's answer encodings are timed and the faster kept (the best client each).
Every first answer is checked against the model computed here.
"""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402

import peer_model  # noqa: E402
import timing  # noqa: E402

W = peer_model.flat_weights()
F, VJP, JVP = peer_model.jax_functions()


def umbridge_calls(url, n, d):
    import umbridge

    model = umbridge.HTTPModel(url, "mlp")
    z = [np.concatenate([d["x"].ravel(), W]).tolist()]
    cfg = {"n": n}
    return {"umbridge.HTTPModel": {
        "evaluate": lambda: np.asarray(model(z, cfg)[0]).reshape(n, 2),
        "forward_derivative": lambda: np.asarray(model.apply_jacobian(
            0, 0, z, np.concatenate([d["dx"].ravel(), d["dw"]]).tolist(), cfg)).reshape(n, 2),
        "gradient": lambda: _split(np.asarray(model.gradient(0, 0, z, d["py"].ravel().tolist(), cfg)), n),
    }}


def _split(g, n):
    return g[n * 8:], g[: n * 8].reshape(n, 8)


def tesseract_calls(url, n, d):
    from tesseract_core import Tesseract

    out = {}
    default = Tesseract.from_url(url)
    for label, t in (("Tesseract.from_url", default),
                     ("Tesseract.from_url(json+base64)", default.with_encoding(output_format="json+base64"))):
        inputs = {"x": d["x"], "w": W}
        out[label] = {
            "evaluate": lambda t=t: np.asarray(t.apply(inputs)["y"]),
            "forward_derivative": lambda t=t: np.asarray(t.jacobian_vector_product(
                inputs, ["x", "w"], ["y"], {"x": d["dx"], "w": d["dw"]})["y"]),
            "gradient": lambda t=t: _pair(t.vector_jacobian_product(inputs, ["x", "w"], ["y"], {"y": d["py"]})),
        }
    return out


def _pair(o):
    return np.asarray(o["w"]), np.asarray(o["x"])


def check(method, got, d):
    if method == "evaluate":
        want = (np.asarray(F(W, d["x"])),)
    elif method == "forward_derivative":
        want = (np.asarray(JVP(W, d["x"], d["dw"], d["dx"])),)
    else:
        want = tuple(np.asarray(a) for a in VJP(W, d["x"], d["py"]))
    got = got if isinstance(got, tuple) else (got,)
    for a, b in zip(got, want):
        if not np.allclose(a, b, rtol=1e-10, atol=1e-12):
            raise AssertionError(f"{method}: wrong answer")


def main():
    peer, url, cases = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    results = {}
    for method, n, reps in cases:
        d = peer_model.data(n)
        clients = (umbridge_calls if peer == "umbridge" else tesseract_calls)(url, n, d)
        best = None
        for label, calls in clients.items():
            fn = calls[method]
            check(method, fn(), d)  # also the first call: any compile happens here
            stats = {**timing.time_calls(fn, reps, warm=min(5, reps)), "client": label}
            if best is None or stats["median_ms"] < best["median_ms"]:
                best = stats
        results[f"{method}/{n}"] = best
    print(json.dumps(results))


if __name__ == "__main__":
    main()
