"""Several directions in one call: the stacked forms, their shapes, and how closely they agree with
r separate calls of the single-direction forms.

What holds, precisely (XLA on the CPU). The stacked kernels are ``jax.vmap`` of the single ones,
so they compute the same mathematical expression, but not bitwise the same floating-point
operations, because XLA compiles the wider vmapped graph differently:
- matrix products become one wider product ((r·n, f) @ (f, u) instead of r products of
  (n, f) @ (f, u)) whose sums run in another order, and so does pw's sum over the rows;
- a multiply and an add are fused into one FMA (one rounding) in one kernel and not in the other:
  on a chain of one-unit linear layers, the single call equals fma(dh, K, h·dK) computed exactly,
  the stacked call dh·K + h·dK rounded twice;
- transcendental activations (gelu's erf, softplus) run through other code paths in other fusions.
So the stacked answers agree with the separate ones to a few units in the last place of the
largest entry of each direction (16 asserted; at most 7 measured over these models), except where
a derivative is itself the result of cancellation (a saturated softmax), where the difference is
still of the order of eps·|py| in absolute terms (the classifier: 1e-13 asserted). What is
bitwise: a direction's answer does not depend on the directions stacked with it (pad directions
included).
"""

from __future__ import annotations

import numpy as np
import pytest

from gradserve import InvalidInput
from factories import random_inputs

EPS = np.finfo(np.float64).eps


def _models(graph_models, demo_models):
    return list(graph_models) + list(demo_models.values())


def _case(model, n, r, seed=0):
    rng = np.random.default_rng(seed)
    return (random_inputs(model, n, seed=seed), model.get_weights(),
            rng.normal(size=(model.n_weights, r)), rng.normal(size=(n, model.n_inputs, r)),
            rng.normal(size=(n, model.n_outputs, r)))


def _separate(model, w, x, dws, dxs, pys):
    """The same quantities from r calls of the single-direction forms."""
    r = dws.shape[1]
    dy = np.stack([model.forward_derivative(w, dws[:, j], x, dxs[..., j]) for j in range(r)], -1)
    grads = [model.gradient(w, x, pys[..., j]) for j in range(r)]
    return dy, np.stack([g[0] for g in grads], -1), np.stack([g[1] for g in grads], -1)


def _ulps(got, want):
    """Per direction (last axis): max |got - want| in units of eps times max |want|."""
    r = want.shape[-1]
    diff = np.abs(got - want).reshape(-1, r).max(axis=0)
    scale = np.abs(want).reshape(-1, r).max(axis=0)
    return float(np.max(diff / (EPS * np.maximum(scale, np.finfo(np.float64).tiny))))


def test_stacked_forms_and_their_shapes(graph_models):
    model = graph_models[0]
    n, m, k, p = 5, model.n_inputs, model.n_outputs, model.n_weights
    x, w, dws, dxs, pys = _case(model, n, 3)
    assert model.forward_derivative(w, dws, x, dxs).shape == (n, k, 3)
    assert model.forward_derivative(w, dws, x).shape == (n, k, 3)
    assert model.forward_derivative(w, None, x, dxs).shape == (n, k, 3)
    pw, px = model.gradient(w, x, pys)
    assert pw.shape == (p, 1, 3) and px.shape == (n, m, 3)
    # dw (p, 1) is the single form unless dx asks for the stacked one.
    assert model.forward_derivative(w, dws[:, :1], x).shape == (n, k)
    assert model.forward_derivative(w, dws[:, :1], x, dxs[..., 0]).shape == (n, k)
    assert model.forward_derivative(w, dws[:, :1], x, dxs[..., :1]).shape == (n, k, 1)
    assert model.forward_derivative(w, None, x, dxs[..., 0]).shape == (n, k)
    assert model.gradient(w, x, pys[..., :1])[0].shape == (p, 1, 1)
    # None holds an argument fixed: the same as zeros.
    np.testing.assert_array_equal(model.forward_derivative(w, None, x, dxs),
                                  model.forward_derivative(w, np.zeros((p, 3)), x, dxs))


@pytest.mark.parametrize("n, r", [(1, 1), (7, 5), (20, 9)])
def test_stacked_calls_agree_with_separate_calls(graph_models, demo_models, n, r):
    # (20, 9) crosses both the largest row bucket (16) and the largest direction bucket (8).
    for i, model in enumerate(_models(graph_models, demo_models)):
        x, w, dws, dxs, pys = _case(model, n, r, seed=i)
        stacked = model.forward_derivative(w, dws, x, dxs), *model.gradient(w, x, pys)
        separate = _separate(model, w, x, dws, dxs, pys)
        for name, got, want in zip(("dy", "pw", "px"), stacked, separate):
            assert got.shape == want.shape, (model.name, name)
            if model.spec.kind == "classification":
                np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-13)
            else:
                assert _ulps(got, want) <= 16, (model.name, name, _ulps(got, want))


def test_a_direction_does_not_depend_on_the_others_stacked_with_it(graph_models):
    model = graph_models[1]  # direction buckets (2, 4): 3 directions run padded to 4
    x, w, dws, dxs, pys = _case(model, 5, 4)
    three = model.forward_derivative(w, dws[:, :3], x, dxs[..., :3]), *model.gradient(w, x, pys[..., :3])
    other = dws.copy(), dxs.copy(), pys.copy()
    for a in other:
        a[..., 1:] *= -3.0  # change every direction but the first
    four = model.forward_derivative(w, other[0], x, other[1]), *model.gradient(w, x, other[2])
    for got, want in zip(four, three):
        np.testing.assert_array_equal(got[..., 0], want[..., 0])


def test_bad_direction_shapes_name_the_array_and_shapes(graph_models):
    model = graph_models[0]  # m = 4, k = 2
    x, w, dws, dxs, pys = _case(model, 4, 3)
    p = model.n_weights
    with pytest.raises(InvalidInput, match=r"dw has 3 directions \(last axis\) and dx has 2"):
        model.forward_derivative(w, dws, x, dxs[..., :2])
    with pytest.raises(InvalidInput, match=r"dx must have shape \(4, 4, r\).*got shape \(4, 4\)"):
        model.forward_derivative(w, dws, x, dxs[..., 0])
    with pytest.raises(InvalidInput, match=rf"dw must have shape \({p}, r\).*got shape \({p},\)"):
        model.forward_derivative(w, dws[:, 0], x, dxs)
    with pytest.raises(InvalidInput, match=r"dx must have shape \(4, 4, r\).*got shape \(3, 4, 3\)"):
        model.forward_derivative(w, None, x, dxs[:3])
    with pytest.raises(InvalidInput, match=r"py must have shape \(4, 2, r\) with r >= 1"):
        model.gradient(w, x, pys[..., :0])
    with pytest.raises(InvalidInput, match="needs dw, dx or both"):
        model.forward_derivative(w, None, x)
    bad = dxs.copy()
    bad[1, 2, 0] = np.inf
    with pytest.raises(InvalidInput, match=r"dx must be finite; dx\[1, 2, 0\] is inf"):
        model.forward_derivative(w, dws, x, bad)
