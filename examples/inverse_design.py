"""Inverse design against a live gradserve: find the borehole inputs that give a target flow.

Minimises (F(x) - target)^2 over the 8 inputs within their training ranges, with the server's
``gradient`` (px) as the exact Jacobian. Run a server first (``gradserve serve``), then:

    python examples/inverse_design.py --url http://127.0.0.1:8000 --target 100
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
from scipy.optimize import minimize

from gradserve_client import Client


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--model", default="borehole")
    parser.add_argument("--target", type=float, default=100.0, help="wanted flow (m^3/yr)")
    args = parser.parse_args()

    with Client(args.url) as client:
        model = client.model(args.model)
        info = model.info()
        lo = np.array([f["min"] for f in info["inputs"]])
        hi = np.array([f["max"] for f in info["inputs"]])
        # Optimise in [0, 1]^m: the raw inputs span five orders of magnitude.
        to_raw = lambda u: (lo + u * (hi - lo)).reshape(1, -1)  # noqa: E731
        calls = 0

        def objective(u):
            nonlocal calls
            calls += 1
            x = to_raw(u)
            y = model.evaluate(x)[0, 0]
            residual = y - args.target
            _, px = model.gradient(None, x, np.array([[2.0 * residual]]))
            return residual ** 2, px[0] * (hi - lo)

        u0 = np.full(len(lo), 0.5)
        result = minimize(objective, u0, jac=True, bounds=[(0, 1)] * len(lo), method="L-BFGS-B",
                          options={"ftol": 1e-14, "gtol": 1e-10, "maxiter": 200})
        x = to_raw(result.x)
        y = model.evaluate(x)[0, 0]
    print(f"start flow {model_flow(args, lo, hi, u0):.3f}; target {args.target}")
    print("inputs:", ", ".join(f"{f['name']}={v:.6g}" for f, v in zip(info["inputs"], x[0])))
    print(f"flow {y:.6f} after {result.nit} iterations, {calls} server round trips")
    if abs(y - args.target) <= 1e-4 * abs(args.target):
        print("reached the target")
        return 0
    print(f"did not reach the target: {result.message}", file=sys.stderr)
    return 1


def model_flow(args, lo, hi, u) -> float:
    with Client(args.url) as client:
        return float(client.model(args.model).evaluate((lo + u * (hi - lo)).reshape(1, -1))[0, 0])


if __name__ == "__main__":
    sys.exit(main())
