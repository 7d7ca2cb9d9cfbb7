"""UM-Bridge server for the benchmark model (run in the UM-Bridge environment).

    python umbridge_server.py --port 4242

UM-Bridge has no batch axis: a batch of n rows travels as one flat vector, with n in the
per-request config ({"n": n}). One model, ``mlp``, takes [x_flat (n*8) ++ w (4866)] and returns
[y_flat (n*2)], so each derivative is one request:
  Evaluate                                -> y_flat
  Gradient(0, 0, sens=py_flat)            -> px_flat ++ pw        (reverse mode, both inputs)
  ApplyJacobian(0, 0, vec=dx_flat ++ dw)  -> dy_flat             (forward mode, both inputs)
"""
import argparse
import functools
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402

import peer_model  # noqa: E402
import umbridge  # noqa: E402
import aiohttp.web  # noqa: E402

P, M, K = peer_model.P, peer_model.M, peer_model.K
F, VJP, JVP = peer_model.jax_functions()


def _n(config):
    return int(config.get("n", 1)) if config else 1


class MLP(umbridge.Model):
    def __init__(self):
        super().__init__("mlp")

    def get_input_sizes(self, config={}):
        return [_n(config) * M + P]

    def get_output_sizes(self, config={}):
        return [_n(config) * K]

    def _unpack(self, parameters, config):
        n = _n(config)
        z = np.asarray(parameters[0], dtype=np.float64)
        return n, z[: n * M].reshape(n, M), z[n * M:]

    def __call__(self, parameters, config={}):
        n, x, w = self._unpack(parameters, config)
        return [np.asarray(F(w, x)).ravel().tolist()]

    def gradient(self, out_wrt, in_wrt, parameters, sens, config={}):
        n, x, w = self._unpack(parameters, config)
        pw, px = VJP(w, x, np.asarray(sens, dtype=np.float64).reshape(n, K))
        return np.concatenate([np.asarray(px).ravel(), np.asarray(pw)]).tolist()

    def apply_jacobian(self, out_wrt, in_wrt, parameters, vec, config={}):
        n, x, w = self._unpack(parameters, config)
        v = np.asarray(vec, dtype=np.float64)
        return np.asarray(JVP(w, x, v[n * M:], v[: n * M].reshape(n, M))).ravel().tolist()

    def supports_evaluate(self):
        return True

    def supports_gradient(self):
        return True

    def supports_apply_jacobian(self):
        return True


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=4242)
    args = parser.parse_args()
    # serve_models binds every interface (aiohttp's run_app without host): keep it on loopback.
    aiohttp.web.run_app = functools.partial(aiohttp.web.run_app, host="127.0.0.1", print=None)
    umbridge.serve_models([MLP()], port=args.port, max_workers=1)
