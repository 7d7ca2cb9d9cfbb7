"""``Model.run_many``: many calls in few compiled calls, each result that of ``Model.run``."""

from __future__ import annotations

import dataclasses
import re

import jax
import numpy as np
import pytest

import gradserve
from factories import random_inputs, random_model

SLOTS, SLOT_ROWS = (2, 4), 4


def stacked_model(seed: int, vectorize: bool | None = None) -> gradserve.Model:
    base = random_model(seed)
    return gradserve.Model(base.spec, base.get_weights(), buckets=(1, 4), direction_buckets=(2,),
                           slots=SLOTS, slot_rows=SLOT_ROWS, vectorize=vectorize)


@pytest.fixture(scope="module")
def model():
    return stacked_model(31).warmup()


def mixed_calls(model: gradserve.Model, method: str, weights: str, sizes, seed: int = 0):
    """Calls of one method: stored weights, one shared vector, or a vector per call."""
    rng = np.random.default_rng(seed)
    w0 = model.get_weights()
    calls = []
    for i, n in enumerate(sizes):
        x = random_inputs(model, n, seed=seed * 100 + i)
        w = {"stored": None, "same": w0, "distinct": w0 * (1 + 0.05 * rng.normal(size=w0.shape))}[weights]
        if method == "evaluate":
            calls.append(model.prepare(method, x, w=w))
        elif method == "forward_derivative":
            dx = rng.normal(size=x.shape) if i % 2 else None  # both kinds in one batch
            calls.append(model.prepare(method, x, w=w, dw=rng.normal(size=w0.shape), dx=dx))
        else:
            calls.append(model.prepare(method, x, w=w, py=rng.normal(size=(n, model.n_outputs))))
    return calls


def assert_same(got, expected, exact: bool) -> None:
    got = got if isinstance(got, tuple) else (got,)
    expected = expected if isinstance(expected, tuple) else (expected,)
    for a, b in zip(got, expected, strict=True):
        assert a.shape == b.shape
        if exact:
            np.testing.assert_array_equal(a, b)
        else:
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


# Sizes: one-row calls, calls in the 4-row bucket, more calls than the largest slot count (so a
# group is split), and one call too large for a slot (it runs alone, in chunks).
SIZES = (1, 1, 3, 1, 4, 2, 1, 1, 1, 9, 1)


@pytest.mark.parametrize("method", ["evaluate", "forward_derivative", "gradient"])
@pytest.mark.parametrize("weights", ["stored", "same", "distinct"])
def test_run_many_is_bitwise_run(model, method, weights):
    """On a CPU each slot runs the operations of an unbatched call: identical bits."""
    calls = mixed_calls(model, method, weights, SIZES)
    traces = model.trace_count
    results = model.run_many(calls)
    assert model.trace_count == traces  # stacked shapes were all compiled at warm-up
    exact = jax.default_backend() == "cpu"
    for call, result in zip(calls, results, strict=True):
        assert_same(result, model.run(call), exact)


@pytest.mark.parametrize("method", ["evaluate", "forward_derivative", "gradient"])
def test_a_call_with_a_non_finite_entry_fails_alone(model, method):
    """Entries are checked when calls run: a bad call gets its error in its place, in a slot
    group and alone (more rows than a slot holds), and the others their own results."""
    calls = mixed_calls(model, method, "distinct", (1, 1, 1, 9, 1), seed=5)
    name = {"evaluate": "x", "forward_derivative": "dw", "gradient": "py"}[method]
    broken = {}
    for i in (1, 3):
        arrays = {k: a.copy() for k, a in calls[i].arrays.items()}
        arrays[name][(0,) * arrays[name].ndim] = np.nan
        calls[i] = dataclasses.replace(calls[i], arrays=arrays)
        broken[i] = rf"{name} must be finite; {name}\[0(, 0)?\] is nan"
    results = model.run_many(calls)
    for i, (call, result) in enumerate(zip(calls, results, strict=True)):
        if i in broken:
            assert isinstance(result, gradserve.InvalidInput)
            assert re.fullmatch(broken[i], result.message), result.message
            with pytest.raises(gradserve.InvalidInput, match=broken[i]):
                model.run(call)
        else:
            assert_same(result, model.run(call), jax.default_backend() == "cpu")


@pytest.mark.parametrize("method", ["evaluate", "forward_derivative", "gradient"])
def test_finite_results_refuse_a_result_that_overflows_alone(model, method):
    """With ``finite_results`` (as the service runs it) a call whose result overflows gets the
    result's refusal in its place, in a slot group and alone; without, its result as ``run``
    computes it. The others get their own results either way."""
    calls = mixed_calls(model, method, "distinct", (1, 1, 1, 9, 1), seed=6)
    for i in (2, 3):
        calls[i] = dataclasses.replace(calls[i], w=calls[i].w * 1e306)  # finite; the result not
    expected = [model.run(call) for call in calls]
    overflows = [not all(np.isfinite(a).all() for a in (r if isinstance(r, tuple) else (r,)))
                 for r in expected]
    assert overflows == [False, False, True, True, False]
    exact = jax.default_backend() == "cpu"
    for result, want, bad in zip(model.run_many(calls, finite_results=True), expected, overflows):
        if bad:
            assert isinstance(result, gradserve.InvalidInput)
            assert f"{method} produced a non-finite result" in result.message
        else:
            assert_same(result, want, exact)
    for result, want in zip(model.run_many(calls), expected):
        assert_same(result, want, exact)


def test_vmapped_slots_agree_with_run():
    """The accelerator form (one vmapped kernel) agrees to rounding."""
    model = stacked_model(32, vectorize=True)  # not warmed up: compiles only what it meets
    for method in ("evaluate", "forward_derivative", "gradient"):
        calls = mixed_calls(model, method, "distinct", (1, 1, 1), seed=1)
        for call, result in zip(calls, model.run_many(calls), strict=True):
            assert_same(result, model.run(call), exact=False)


def test_no_retrace_for_any_batch_after_warmup(model):
    traces = model.trace_count
    assert traces == len(model.compiled_shapes())  # one trace per executable, during warm-up
    assert sum(k.endswith("_stack") for k, _, _ in model.compiled_shapes()) == 3 * len(SLOTS) * 2
    for count in range(1, max(SLOTS) * 2 + 2):
        for n in (1, 2, 4, 5):
            for method in ("evaluate", "forward_derivative", "gradient"):
                model.run_many(mixed_calls(model, method, "distinct", [n] * count, seed=count))
    assert model.trace_count == traces


def test_without_slots_every_call_runs_alone():
    plain = random_model(33, buckets=(4,))
    calls = mixed_calls(plain, "gradient", "distinct", (1, 1, 2))
    for call, result in zip(calls, plain.run_many(calls), strict=True):
        assert_same(result, plain.run(call), exact=True)


def test_estimated_seconds_come_from_the_kernels_timed_at_warm_up(model):
    x1, x4 = random_inputs(model, 1), random_inputs(model, 4)
    py = np.zeros((4, model.n_outputs))
    one = model.estimated_seconds(model.prepare("evaluate", x1))
    assert 0 < one < 1
    gradient = model.estimated_seconds(model.prepare("gradient", x4, py=py))
    assert 0 < gradient < 1
    # More rows than the largest bucket (4): chunks of it, each timed as one.
    x9 = random_inputs(model, 9)
    assert (model.estimated_seconds(model.prepare("evaluate", x9))
            == 3 * model.estimated_seconds(model.prepare("evaluate", x4)))
    # Several directions at once: not timed, so never taken for quick.
    many = model.prepare("gradient", x4, py=np.zeros((4, model.n_outputs, 2)))
    assert model.estimated_seconds(many) == float("inf")
    # Before warm-up nothing is known.
    cold = stacked_model(32)
    assert cold.estimated_seconds(cold.prepare("evaluate", random_inputs(cold, 1))) == float("inf")


def test_a_faster_call_lowers_the_estimate_and_a_slower_one_leaves_it(model):
    """A warm-up timing taken in a slow moment would misjudge every call after it."""
    call = model.prepare("evaluate", random_inputs(model, 3))
    key = ("evaluate", model.bucket_for(call.rows))
    timed = model._seconds[key]
    try:
        model._seconds[key] = 1.0  # as if warm-up had met a slow second
        model.run(call)
        assert 0 < model.estimated_seconds(call) < 1.0
        model._seconds[key] = 1e-12  # faster than any call can be
        model.run(call)
        assert model.estimated_seconds(call) == 1e-12
    finally:
        model._seconds[key] = timed
