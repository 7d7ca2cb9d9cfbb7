"""Kernels beyond the four methods: many directions in one call, full Jacobians, and
Hessian-vector products, each a pure function of arrays built from the model's one F(w, x).

Every kernel is written for one batch shape; the engine compiles it for a fixed set of row buckets
and, for the many-direction kernels, a fixed set of direction buckets (pad directions are zero).
Argument order follows the engine's convention: w, then per-call arrays, then per-row arrays.

Shapes (n rows, m inputs, k outputs, p weights, r directions on the last axis):

    jvp_many(w (p,), dW (p, r), x (n, m), dX (n, m, r))  -> dY (n, k, r)
    vjp_many(w (p,), x (n, m), PY (n, k, r))             -> (PW (p, r), PX (n, m, r))
    hvp(w (p,), dw (p,), x (n, m), py (n, k), dx (n, m)) -> (hw (p,), hx (n, m))
    jacobian_x(w (p,), x (n, m))                          -> (n, k, m), ∂y_i/∂x_i per row
    jacobian_w(w (p,), x (n, m))                          -> (n, k, p), ∂y_i/∂w per row

The Jacobians rely on rows being independent (every layer acts on each row alone, as the model
format guarantees): ∂y_i/∂x_j = 0 for i != j, so only the per-row blocks are computed.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

__all__ = ["ARGS", "MANY", "arg_shape", "is_directional", "is_per_row", "jacobian_modes", "kernels"]

# Argument names of every compiled kernel, the four methods' included, in call order.
ARGS: dict[str, tuple[str, ...]] = {
    "evaluate": ("w", "x"),
    "jvp": ("w", "dw", "x", "dx"),
    "jvp_w": ("w", "dw", "x"),
    "vjp": ("w", "x", "py"),
    "jvp_many": ("w", "dW", "x", "dX"),
    "vjp_many": ("w", "x", "PY"),
    "hvp": ("w", "dw", "x", "py", "dx"),
    "jacobian_x": ("w", "x"),
    "jacobian_w": ("w", "x"),
}
MANY = frozenset({"jvp_many", "vjp_many"})  # compiled per (row bucket, direction bucket)
_PER_ROW = frozenset({"x", "dx", "py", "dX", "PY"})
_DIRECTIONAL = frozenset({"dW", "dX", "PY"})  # directions on the last axis


def arg_shape(arg: str, n: int, r: int | None, m: int, k: int, p: int) -> tuple[int, ...]:
    """The shape of argument ``arg`` for n rows and r directions."""
    return {"w": (p,), "dw": (p,), "dW": (p, r), "x": (n, m), "dx": (n, m), "py": (n, k),
            "dX": (n, m, r), "PY": (n, k, r)}[arg]


def is_per_row(arg: str) -> bool:
    """True for arguments with one row per sample (padded along axis 0)."""
    return arg in _PER_ROW


def is_directional(arg: str) -> bool:
    """True for arguments holding r directions on their last axis (padded with zeros)."""
    return arg in _DIRECTIONAL


def jacobian_modes(m: int, k: int, p: int) -> dict[str, str]:
    """Forward mode costs one pass per input direction, reverse mode one per output: choose the
    smaller count for each Jacobian (ties go forward: no stored residuals)."""
    return {"x": "forward" if m <= k else "reverse", "w": "forward" if p <= k else "reverse"}


def kernels(forward: Callable, m: int, k: int, p: int) -> dict[str, Callable]:
    """The higher-order kernels of F(w (p,), x (n, m)) -> y (n, k)."""
    modes = jacobian_modes(m, k, p)

    def jvp(w, dw, x, dx):
        return jax.jvp(forward, (w, x), (dw, dx))[1]

    def vjp(w, x, py):
        return jax.vjp(forward, w, x)[1](py)

    # One vmapped call over the directions (last axis), not r calls: the primal pass is shared
    # and the tangent products become wider matrix products.
    jvp_many = jax.vmap(jvp, in_axes=(None, 1, None, 2), out_axes=2)
    vjp_many = jax.vmap(vjp, in_axes=(None, None, 2), out_axes=(1, 2))

    def hvp(w, dw, x, py, dx):
        # Forward over reverse: the directional derivative of the gradient of <py, F(w, x)>.
        return jax.jvp(lambda ww, xx: vjp(ww, xx, py), (w, x), (dw, dx))[1]

    def jacobian_x(w, x):
        f = lambda xx: forward(w, xx)  # noqa: E731
        if modes["x"] == "forward":
            # Unit input direction e_j on every row at once: rows are independent, so row i of
            # the answer is ∂y_i/∂x_i · e_j.
            basis = jnp.eye(m, dtype=x.dtype)
            cols = jax.vmap(lambda e: jax.jvp(f, (x,), (jnp.broadcast_to(e, x.shape),))[1])(basis)
            return jnp.moveaxis(cols, 0, 2)  # (m, n, k) -> (n, k, m)
        y, back = jax.vjp(f, x)
        basis = jnp.eye(k, dtype=y.dtype)
        rows = jax.vmap(lambda e: back(jnp.broadcast_to(e, y.shape))[0])(basis)
        return jnp.moveaxis(rows, 0, 1)  # (k, n, m) -> (n, k, m)

    def jacobian_w(w, x):
        # ∂y_i/∂w differs per row and a batched VJP would sum the rows: differentiate one row,
        # vmapped over the rows.
        jac = jax.jacfwd if modes["w"] == "forward" else jax.jacrev
        return jax.vmap(lambda xi: jac(lambda ww: forward(ww, xi[None])[0])(w))(x)

    return {"jvp_many": jvp_many, "vjp_many": vjp_many, "hvp": hvp,
            "jacobian_x": jacobian_x, "jacobian_w": jacobian_w}
