"""The benchmark model: an 8-64-64-2 tanh MLP, float64, flat weights w (p = 4866).

The model the two peer servers were first measured with (weights drawn from PRNGKey(0)), so all
three servers serve the same function with the same weights. Imported by the driver (to build a
gradserve model repository and the request data), by the peers' server scripts and by the peers'
client script, in whichever environment each runs: numpy and jax only.
"""

from __future__ import annotations

import os

import numpy as np

M, H, K = 8, 64, 2
P = M * H + H + H * H + H + H * K + K  # 4866


def weights() -> list[tuple[np.ndarray, np.ndarray]]:
    """[(W (fan_in, units), b (units,))] per layer, drawn on the CPU so that every machine (and
    every JAX backend) gets the same numbers."""
    import jax

    jax.config.update("jax_enable_x64", True)
    cpu = jax.devices("cpu")[0]
    with jax.default_device(cpu):
        sizes = [M, H, H, K]
        keys = jax.random.split(jax.random.PRNGKey(0), 2 * (len(sizes) - 1))
        layers = []
        for i, (fan_in, units) in enumerate(zip(sizes[:-1], sizes[1:])):
            w = jax.random.normal(keys[2 * i], (fan_in, units), dtype="float64") / np.sqrt(fan_in)
            b = 0.1 * jax.random.normal(keys[2 * i + 1], (units,), dtype="float64")
            layers.append((np.asarray(w), np.asarray(b)))
    return layers


def flat_weights() -> np.ndarray:
    """w (p,): each layer's W row-major, then its b (gradserve's documented order, and that of
    ``jax.flatten_util.ravel_pytree`` over the layer list)."""
    return np.concatenate([np.concatenate([w.ravel(), b]) for w, b in weights()])


def data(n: int, seed: int = 1) -> dict[str, np.ndarray]:
    """Deterministic request arrays for a batch of n rows: x, dx (n, 8), py (n, 2), dw (p,)."""
    rng = np.random.default_rng(seed + n)
    return {"x": rng.standard_normal((n, M)), "py": rng.standard_normal((n, K)),
            "dx": rng.standard_normal((n, M)), "dw": rng.standard_normal(P) * 0.01}


def jax_functions():
    """(F, vjp_both, jvp_both), jitted: F(w, x) -> y; vjp_both(w, x, py) -> (pw, px);
    jvp_both(w, x, dw, dx) -> dy. What the peers' servers call."""
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
    sizes = [(M, H), (H, H), (H, K)]

    def unravel(w):
        layers, start = [], 0
        for fan_in, units in sizes:
            kernel = w[start:start + fan_in * units].reshape(fan_in, units)
            start += fan_in * units
            layers.append((kernel, w[start:start + units]))
            start += units
        return layers

    def F(w, x):
        (w1, b1), (w2, b2), (w3, b3) = unravel(w)
        h = jnp.tanh(x @ w1 + b1)
        h = jnp.tanh(h @ w2 + b2)
        return h @ w3 + b3

    @jax.jit
    def vjp_both(w, x, py):
        return jax.vjp(F, w, x)[1](py)

    @jax.jit
    def jvp_both(w, x, dw, dx):
        return jax.jvp(F, (w, x), (dw, dx))[1]

    return jax.jit(F), vjp_both, jvp_both
