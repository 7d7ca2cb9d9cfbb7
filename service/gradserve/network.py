"""The pure function y = F(w, x) of a spec, written for one configuration.

The spec is static: layer sizes, activations and normalisation constants are baked into the traced
function as Python values, and only ``w`` (p,) and ``x`` (n, m) are array arguments. Every
derivative comes from ``jax.jvp`` / ``jax.vjp`` of this one function.

The flat weight vector is, layer after layer in spec order, the layer's W (fan_in × units,
row-major) followed by its bias (units,); a layer's fan_in rows are its inputs' units in the
order its ``inputs`` lists them. This ordering is a public contract (docs/model-format.md).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from .spec import INPUT_NODE, ModelSpec

__all__ = ["build_forward", "split_weights", "join_weights"]

# A GPU's default for float32 products is TF32 (10-bit mantissa): measured on an H100, a
# float32 model's <py, J.v> and <J^T.py, v> then differed by 6e-4 relative. Full precision keeps
# every product, and the derivatives AD makes of it, in the model's own dtype; CPUs ignore it.
_FULL = jax.lax.Precision.HIGHEST

_ACTIVATIONS: dict[str, Callable] = {
    "identity": lambda z: z,
    "tanh": jnp.tanh,
    "relu": jax.nn.relu,
    "sigmoid": jax.nn.sigmoid,
    "softplus": jax.nn.softplus,
    # The exact (erf) form, as PyTorch's and Keras' defaults: imported models then match.
    "gelu": lambda z: jax.nn.gelu(z, approximate=False),
    "silu": jax.nn.silu,
    "softmax": lambda z: jax.nn.softmax(z, axis=-1),
}


def build_forward(spec: ModelSpec) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """Return F(w, x): w (p,), x (n, m) in raw units -> y (n, k) in raw units."""
    dtype = np.dtype(spec.dtype)
    in_shift = np.array([f.shift for f in spec.inputs], dtype=dtype)
    in_scale = np.array([f.scale for f in spec.inputs], dtype=dtype)
    out_shift = np.array([f.shift for f in spec.outputs], dtype=dtype)
    out_scale = np.array([f.scale for f in spec.outputs], dtype=dtype)
    plan = []  # (name, inputs, fan_in, units, activation, offset)
    offset = 0
    for layer in spec.layers:
        fan_in = spec.fan_in(layer)
        plan.append((layer.name, tuple(layer.inputs), fan_in, layer.units,
                     _ACTIVATIONS[layer.activation], offset))
        offset += fan_in * layer.units + layer.units
    last = spec.layers[-1].name

    def forward(w: jax.Array, x: jax.Array) -> jax.Array:
        nodes = {INPUT_NODE: (x - in_shift) / in_scale}
        for name, inputs, fan_in, units, act, start in plan:
            h = nodes[inputs[0]] if len(inputs) == 1 else jnp.concatenate(
                [nodes[i] for i in inputs], axis=-1)
            kernel = w[start:start + fan_in * units].reshape(fan_in, units)
            bias = w[start + fan_in * units:start + fan_in * units + units]
            nodes[name] = act(jnp.matmul(h, kernel, precision=_FULL) + bias)
        return nodes[last] * out_scale + out_shift

    return forward


def split_weights(spec: ModelSpec, w: np.ndarray) -> dict[str, np.ndarray]:
    """Flat vector (p,) -> the named tensors of the weight file."""
    w = np.asarray(w).reshape(-1)
    tensors, offset = {}, 0
    for name, shape in spec.weight_shapes():
        size = int(np.prod(shape))
        tensors[name] = w[offset:offset + size].reshape(shape)
        offset += size
    return tensors


def join_weights(spec: ModelSpec, tensors: dict[str, np.ndarray]) -> np.ndarray:
    """The named tensors of the weight file -> flat vector (p,), in the documented order."""
    return np.concatenate(
        [np.asarray(tensors[name], dtype=spec.dtype).reshape(-1) for name, _ in spec.weight_shapes()]
    )
