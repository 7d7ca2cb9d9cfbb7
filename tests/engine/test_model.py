"""Shapes, dtypes, set_weights semantics, padding and the no-retrace guarantee."""

from __future__ import annotations

import jax
import numpy as np
import pytest

import gradserve
from gradserve import InvalidInput, SetWeightsStatus
from factories import random_inputs, random_model


@pytest.fixture(scope="module")
def model():
    return random_model(21, m=3, k=2, buckets=(1, 4, 16), direction_buckets=(2, 4)).warmup()


def test_shapes_and_dtypes_as_documented(model):
    n, m, k, p = 5, model.n_inputs, model.n_outputs, model.n_weights
    x, w = random_inputs(model, n), model.get_weights()
    assert w.shape == (p, 1) and w.dtype == np.float64
    assert model.evaluate(x).shape == (n, k)
    assert model.forward_derivative(w, np.ones((p, 1)), x).shape == (n, k)
    assert model.forward_derivative(w, np.ones(p), x, np.ones((n, m))).shape == (n, k)
    pw, px = model.gradient(w, x, np.ones((n, k)))
    assert pw.shape == (p, 1) and px.shape == (n, m)
    assert pw.dtype == px.dtype == np.float64
    # (p,) is accepted wherever (p, 1) is, with the same result.
    np.testing.assert_array_equal(model.gradient(w.ravel(), x, np.ones((n, k)))[0], pw)


def test_dx_none_means_inputs_fixed(model):
    x, w = random_inputs(model, 4), model.get_weights()
    dw = np.random.default_rng(0).normal(size=w.shape)
    np.testing.assert_allclose(model.forward_derivative(w, dw, x),
                               model.forward_derivative(w, dw, x, np.zeros_like(x)), rtol=1e-13, atol=1e-15)


def test_passing_w_does_not_change_stored_weights(model):
    stored = model.get_weights()
    x = random_inputs(model, 3)
    other = stored + 0.5
    y_other = model.evaluate(x, other)
    model.gradient(other, x, np.ones((3, model.n_outputs)))
    np.testing.assert_array_equal(model.get_weights(), stored)
    assert not np.allclose(model.evaluate(x), y_other)


def test_get_weights_returns_a_copy(model):
    w = model.get_weights()
    w[:] = 123.0
    assert not np.any(model.get_weights() == 123.0)


@pytest.mark.parametrize("bad, status", [
    (np.ones((7, 1)), SetWeightsStatus.WRONG_SHAPE),
    ("nan-array", SetWeightsStatus.NOT_FINITE),
    ("inf-array", SetWeightsStatus.NOT_FINITE),
    (np.array(["a", "b"]), SetWeightsStatus.NOT_NUMERIC),
    ([[1.0], [2.0, 3.0]], SetWeightsStatus.NOT_NUMERIC),
])
def test_set_weights_refuses_and_keeps_old_weights(bad, status):
    model = random_model(3)
    before = model.get_weights()
    if isinstance(bad, str):
        value = before.copy()
        value[len(value) // 2] = np.nan if bad.startswith("nan") else np.inf
        bad = value
    assert model.set_weights(bad) == status != 0
    np.testing.assert_array_equal(model.get_weights(), before)


def test_set_weights_stores_and_changes_results():
    model = random_model(4)
    x = random_inputs(model, 3)
    new = model.get_weights() * 0.5
    y_expected = model.evaluate(x, new)
    assert model.set_weights(new) == 0
    np.testing.assert_array_equal(model.get_weights(), new)
    np.testing.assert_array_equal(model.evaluate(x), y_expected)


def test_bad_arguments_name_the_array_and_shapes(model):
    x, w = random_inputs(model, 4), model.get_weights()
    with pytest.raises(InvalidInput, match=r"x must have shape \(n, 3\).*got shape \(4, 2\)"):
        model.evaluate(x[:, :2])
    with pytest.raises(InvalidInput, match=r"py must have as many rows as x \(4\); got shape \(3, 2\)"):
        model.gradient(w, x, np.ones((3, 2)))
    with pytest.raises(InvalidInput, match=r"dw must have shape \(\d+, 1\)"):
        model.forward_derivative(w, np.ones(3), x)
    bad = x.copy()
    bad[2, 1] = np.nan
    with pytest.raises(InvalidInput, match=r"x must be finite; x\[2, 1\] is nan"):
        model.evaluate(bad)
    with pytest.raises(InvalidInput, match="n >= 1"):
        model.evaluate(np.zeros((0, 3)))


def test_padding_never_changes_a_result(model):
    """Bucketed results equal the unpadded function run at the exact shape."""
    forward = jax.jit(model.forward_function)
    rng = np.random.default_rng(1)
    w = model.get_weights()
    for n in (1, 2, 3, 5, 16, 17, 40):
        x = random_inputs(model, n, seed=n)
        np.testing.assert_allclose(model.evaluate(x), np.asarray(forward(w.ravel(), x)),
                                   rtol=1e-13, atol=1e-14)
        py = rng.normal(size=(n, model.n_outputs))
        _, vjp = jax.vjp(model.forward_function, w.ravel(), x)
        pw_ref, px_ref = vjp(py)
        pw, px = model.gradient(w, x, py)
        np.testing.assert_allclose(pw.ravel(), pw_ref, rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(px, px_ref, rtol=1e-12, atol=1e-13)


def test_no_retrace_for_any_batch_size_after_warmup(model):
    """Every n from 1 to well past the largest bucket (chunked), and every number of directions
    to well past the largest direction bucket, runs on compiled buckets only."""
    traces = model.trace_count
    single = ("evaluate", "jvp", "jvp_w", "vjp", "hvp", "jacobian_x", "jacobian_w")
    stacked = ("jvp_many", "vjp_many")
    # one trace per kernel and bucket (and direction bucket), all during warmup
    assert traces == len(model.buckets) * (len(single) + len(stacked) * len(model.direction_buckets))
    assert traces == len(model.compiled_shapes())
    w = model.get_weights()
    dw = np.ones_like(w)
    for n in range(1, 3 * model.buckets[-1] + 2):
        x = random_inputs(model, n, seed=n)
        py = np.ones((n, model.n_outputs))
        model.evaluate(x)
        model.forward_derivative(w, dw, x)
        model.forward_derivative(w, dw, x, x)
        model.gradient(None, x, py)
        model.hessian_vector(None, x, py, dw, x)
        model.jacobian(None, x, "x")
        model.jacobian(w, x, "w")
    x = random_inputs(model, 5)
    for r in range(1, 2 * model.direction_buckets[-1] + 2):
        model.forward_derivative(w, np.ones((model.n_weights, r)), x, np.ones((5, model.n_inputs, r)))
        model.gradient(w, x, np.ones((5, model.n_outputs, r)))
    assert model.trace_count == traces


def test_chunks_beyond_the_largest_bucket_agree_with_one_pass():
    small = random_model(8, buckets=(1, 4))
    large = gradserve.Model(small.spec, small.get_weights(), buckets=(64,))
    x = random_inputs(small, 23)
    py = np.random.default_rng(2).normal(size=(23, small.n_outputs))
    np.testing.assert_allclose(small.evaluate(x), large.evaluate(x), rtol=1e-13)
    for a, b in zip(small.gradient(None, x, py), large.gradient(None, x, py)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def test_default_buckets_cover_large_batches_without_retrace():
    model = random_model(9, buckets=gradserve.DEFAULT_BUCKETS).warmup()
    traces = model.trace_count
    for n in (1, 2, 63, 64, 65, 4095, 4096, 4097, 9000):
        assert model.evaluate(random_inputs(model, n)).shape == (n, model.n_outputs)
    assert model.trace_count == traces
