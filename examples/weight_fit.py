"""Fit a model's weights to new data through a live gradserve, with a least-squares solver.

The residual r(w) = F(X, w) - Y is evaluated on the server; its Jacobian J = ∂r/∂w is never
formed: the solver gets J·v from ``forward_derivative`` and Jᵀ·u from ``gradient``. Here the new
data come from the compression model itself at perturbed weights, so the fit must recover them.

    python examples/weight_fit.py --url http://127.0.0.1:8000 [--store]

``--store`` saves the fitted weights on the server (``set_weights``: a new version).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
from scipy.optimize import least_squares
from scipy.sparse.linalg import LinearOperator

from gradserve_client import Client


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--model", default="compression")
    parser.add_argument("--store", action="store_true", help="store the fitted weights")
    args = parser.parse_args()

    with Client(args.url) as client:
        model = client.model(args.model)
        info = model.info()
        w0 = model.get_weights()
        rng = np.random.default_rng(0)
        lo = np.array([f["min"] for f in info["inputs"]])
        hi = np.array([f["max"] for f in info["inputs"]])
        X = lo + (hi - lo) * rng.uniform(size=(100, len(lo)))
        w_true = w0 * (1 + 0.02 * rng.normal(size=w0.shape))
        Y = model.evaluate(X, w_true)
        n, k = Y.shape

        residual = lambda w: (model.evaluate(X, w) - Y).ravel()  # noqa: E731

        def jacobian(w):
            w = w.reshape(-1, 1)
            return LinearOperator(
                (n * k, w.size), dtype=np.float64,
                matvec=lambda v: model.forward_derivative(w, v.reshape(-1, 1), X).ravel(),
                rmatvec=lambda u: model.gradient(w, X, u.reshape(n, k))[0].ravel())

        start = 0.5 * np.sum(residual(w0.ravel()) ** 2)
        calls = {"J": 0}

        def counted(w):
            calls["J"] += 1
            return jacobian(w)

        fit = least_squares(residual, w0.ravel(), jac=counted, tr_solver="lsmr", method="trf",
                            tr_options={"maxiter": 40}, max_nfev=40, ftol=1e-15, xtol=1e-15,
                            gtol=1e-15)
        print(f"cost {start:.3e} -> {fit.cost:.3e} in {fit.nfev} evaluations, {calls['J']} Jacobians")
        if args.store:
            status = model.set_weights(fit.x.reshape(-1, 1))
            print(f"stored as version {model.version} (status {status})")
    if fit.cost <= 1e-4 * start:
        print("reached the target: the cost fell by more than 1e4")
        return 0
    print(f"did not reach the target: {fit.message}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
