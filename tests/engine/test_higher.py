"""Full Jacobians and Hessian-vector products, checked in float64 against central finite
differences of the lower-order calls, against each other, and for the Hessian's symmetry."""

from __future__ import annotations

import numpy as np
import pytest

from gradserve import InvalidInput
from gradserve.derivatives import jacobian_modes
from factories import random_inputs, random_model


def _models(graph_models, demo_models):
    return list(graph_models) + list(demo_models.values())


def _span(model):
    return np.array([max(f.max - f.min, 1e-3) for f in model.spec.inputs])


def _rel(got, want):
    return float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-300))


def test_hessian_vector_matches_finite_differences_of_the_gradient(graph_models, demo_models):
    for i, model in enumerate(_models(graph_models, demo_models)):
        rng = np.random.default_rng(i)
        x, w = random_inputs(model, 6, seed=i), model.get_weights()
        py = rng.normal(size=(6, model.n_outputs))
        dw = rng.normal(size=w.shape) * 0.1
        dx = rng.normal(size=x.shape) * _span(model) * 1e-2
        hw, hx = model.hessian_vector(w, x, py, dw, dx)
        assert hw.shape == w.shape and hx.shape == x.shape
        h = 1e-5
        plus = model.gradient(w + h * dw, x + h * dx, py)
        minus = model.gradient(w - h * dw, x - h * dx, py)
        for got, a, b in ((hw, plus[0], minus[0]), (hx, plus[1], minus[1])):
            fd = (a - b) / (2 * h)
            # Central differences: O(h²) truncation plus eps·|g|/h rounding.
            assert _rel(got, fd) < 1e-5, (model.name, _rel(got, fd))


def test_hessian_is_symmetric(graph_models, demo_models):
    """<u, H v> = <v, H u> for directions u, v over (w, x): a check with no step size."""
    for i, model in enumerate(_models(graph_models, demo_models)):
        rng = np.random.default_rng(50 + i)
        x, w = random_inputs(model, 5, seed=i), model.get_weights()
        py = rng.normal(size=(5, model.n_outputs))
        u = rng.normal(size=w.shape), rng.normal(size=x.shape) * _span(model) * 1e-2
        v = rng.normal(size=w.shape), rng.normal(size=x.shape) * _span(model) * 1e-2
        hu = model.hessian_vector(w, x, py, *u)
        hv = model.hessian_vector(w, x, py, *v)
        left = np.sum(u[0] * hv[0]) + np.sum(u[1] * hv[1])
        right = np.sum(v[0] * hu[0]) + np.sum(v[1] * hu[1])
        scale = (np.sum(np.abs(u[0] * hv[0])) + np.sum(np.abs(u[1] * hv[1]))
                 + np.sum(np.abs(v[0] * hu[0])) + np.sum(np.abs(v[1] * hu[1])))
        assert abs(left - right) <= 1e-10 * scale, (model.name, left, right)


def test_hessian_vector_with_one_direction_is_the_other_zero(graph_models):
    model = graph_models[2]
    rng = np.random.default_rng(3)
    x, w = random_inputs(model, 4), model.get_weights()
    py, dw, dx = rng.normal(size=(4, model.n_outputs)), rng.normal(size=w.shape), rng.normal(size=x.shape)
    for got, want in zip(model.hessian_vector(w, x, py, dw=dw), model.hessian_vector(w, x, py, dw, 0 * dx)):
        np.testing.assert_array_equal(got, want)
    for got, want in zip(model.hessian_vector(w, x, py, dx=dx), model.hessian_vector(w, x, py, 0 * dw, dx)):
        np.testing.assert_array_equal(got, want)
    with pytest.raises(InvalidInput, match="needs dw, dx or both"):
        model.hessian_vector(w, x, py)
    with pytest.raises(InvalidInput, match=r"py must have as many rows as x \(4\)"):
        model.hessian_vector(w, x, py[:3], dw)


def test_jacobians_match_finite_differences_of_evaluate(graph_models, demo_models):
    for i, model in enumerate(_models(graph_models, demo_models)):
        n, m, k, p = 5, model.n_inputs, model.n_outputs, model.n_weights
        x, w = random_inputs(model, n, seed=i), model.get_weights()
        jx, jw = model.jacobian(w, x, "x"), model.jacobian(w, x, "w")
        assert jx.shape == (n, k, m) and jw.shape == (n, k, p)
        span = _span(model)
        for j in range(m):
            h = 1e-6 * span[j]
            e = np.zeros(m)
            e[j] = h
            fd = (model.evaluate(x + e, w) - model.evaluate(x - e, w)) / (2 * h)
            np.testing.assert_allclose(jx[..., j], fd, rtol=1e-5, atol=1e-7 * np.abs(fd).max() + 1e-12)
        rng = np.random.default_rng(i)
        for j in rng.choice(p, size=4, replace=False):
            e = np.zeros((p, 1))
            e[j] = 1e-6
            fd = (model.evaluate(x, w + e) - model.evaluate(x, w - e)) / 2e-6
            np.testing.assert_allclose(jw[..., j], fd, rtol=1e-5, atol=1e-7 * np.abs(fd).max() + 1e-12)


def test_jacobians_agree_with_the_first_order_calls(graph_models, demo_models):
    """J_x·e_j is forward_derivative in direction e_j; Σ_i J_w[i]ᵀ py_i is gradient's pw."""
    for i, model in enumerate(_models(graph_models, demo_models)):
        rng = np.random.default_rng(70 + i)
        n, m = 6, model.n_inputs
        x = random_inputs(model, n, seed=i)
        dxs = np.broadcast_to(np.eye(m), (n, m, m))
        np.testing.assert_allclose(model.jacobian(None, x, "x"),
                                   model.forward_derivative(None, None, x, dxs), rtol=1e-12, atol=1e-13)
        py = rng.normal(size=(n, model.n_outputs))
        pw = np.einsum("nkp,nk->p", model.jacobian(None, x, "w"), py)
        np.testing.assert_allclose(pw, model.gradient(None, x, py)[0].ravel(), rtol=1e-11, atol=1e-12)


def test_jacobian_mode_follows_the_shape():
    assert jacobian_modes(m=8, k=1, p=1377) == {"x": "reverse", "w": "reverse"}
    assert jacobian_modes(m=2, k=3, p=371) == {"x": "forward", "w": "reverse"}
    assert jacobian_modes(m=6, k=6, p=4) == {"x": "forward", "w": "forward"}
    # A model in each mode for x gives the same Jacobian (within rounding).
    wide = random_model(41, m=2, k=5)   # forward for x
    assert jacobian_modes(wide.n_inputs, wide.n_outputs, wide.n_weights)["x"] == "forward"
    x = random_inputs(wide, 3)
    jx = wide.jacobian(None, x, "x")
    rows = np.stack([wide.gradient(None, x, np.broadcast_to(np.eye(5)[c], (3, 5)))[1]
                     for c in range(5)], axis=1)  # reverse mode, one output at a time
    np.testing.assert_allclose(jx, rows, rtol=1e-12, atol=1e-13)


def test_jacobian_refuses_an_unknown_wrt(graph_models):
    with pytest.raises(InvalidInput, match="wrt must be 'x' or 'w', got 'y'"):
        graph_models[0].jacobian(None, random_inputs(graph_models[0], 2), "y")


def test_float32_model_in_its_own_precision():
    model = random_model(12, dtype="float32")
    rng = np.random.default_rng(1)
    x = random_inputs(model, 4)
    py, dw = rng.normal(size=(4, model.n_outputs)), rng.normal(size=(model.n_weights, 1))
    hw, hx = model.hessian_vector(None, x, py, dw)
    jx = model.jacobian(None, x, "x")
    assert hw.dtype == hx.dtype == jx.dtype == np.float32
    dys = model.forward_derivative(None, np.tile(dw, (1, 3)), x)
    assert dys.dtype == np.float32 and dys.shape == (4, model.n_outputs, 3)
