"""gradserve.build on the borehole data: the stated accuracy, a stored version that loads, the
same derivative checks as every model, determinism, and the other two kinds."""

from pathlib import Path

import numpy as np
import pytest

import gradserve
from gradserve.architecture import Candidate, choose, default_architectures, n_weights

DATA = Path(__file__).resolve().parents[2] / "service" / "demo" / "data"
# The stated accuracy of a built borehole model: relative RMSE (RMSE / standard deviation of the
# flow) on the validation rows and on the 500 held-out rows of borehole_test.csv. Measured with
# the settings below: the search keeps 8 -> 8 tanh -> 1 (p = 81) at about 0.8% on both.
BOREHOLE_RELATIVE_RMSE = 0.015
SEARCH = [(4,), (8,), (8, 8)]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("repo") / "borehole"
    result = gradserve.build(DATA / "borehole_train.csv", outputs=["flow"], out=out,
                             architectures=SEARCH, epochs=1000, patience=200, seed=0,
                             progress=False)
    return result, out


def test_the_built_model_reaches_the_stated_validation_error(built):
    result, _ = built
    report = result.report
    assert report.validation_error < BOREHOLE_RELATIVE_RMSE, str(report)
    assert report.outputs[0].name == "flow" and report.outputs[0].validation < BOREHOLE_RELATIVE_RMSE
    test = np.loadtxt(DATA / "borehole_test.csv", delimiter=",", skiprows=1)
    pred = result.model.evaluate(test[:, :8])[:, 0]
    held_out = np.sqrt(np.mean((pred - test[:, 8]) ** 2)) / test[:, 8].std()
    assert held_out < BOREHOLE_RELATIVE_RMSE, held_out


def test_the_search_kept_the_smallest_network_within_the_tolerance(built):
    report = built[0].report
    assert [c.hidden for c in report.candidates] == SEARCH
    best = min(c.validation_error for c in report.candidates)
    kept = next(c for c in report.candidates if c.hidden == report.chosen)
    assert kept.validation_error <= 1.25 * best
    assert all(c.n_weights >= kept.n_weights for c in report.candidates
               if c.validation_error <= 1.25 * best)
    assert report.n_weights == kept.n_weights == built[0].model.n_weights
    assert report.n_rows == 2000 and report.n_validation == 400 and report.n_train == 1600
    text = str(report)
    assert "flow" in text and f"p = {kept.n_weights}" in text and "validation rel. RMSE" in text


def test_it_is_stored_as_a_version_that_loads_with_its_record(built):
    result, out = built
    assert result.version == 1 == result.model.version
    loaded = gradserve.load_model(out)
    assert loaded.version == 1 and np.array_equal(loaded.get_weights(), result.model.get_weights())
    spec = loaded.spec
    assert [f.name for f in spec.inputs] == ["rw", "r", "Tu", "Hu", "Tl", "Hl", "L", "Kw"]
    record = spec.metadata["build"]
    assert record["normalisation"]["input_shift"] == ["auto"] * 8
    assert record["chosen"] == list(result.report.chosen) and record["seed"] == 0
    assert spec.metadata["training"]["optimizer"] == "lbfgs"
    # auto normalisation maps every input of the fitting rows onto [-1, 1] (touching an end), so
    # all rows, validation ones included, land about there
    train = np.loadtxt(DATA / "borehole_train.csv", delimiter=",", skiprows=1)
    shift = np.array([f.shift for f in spec.inputs])
    scale = np.array([f.scale for f in spec.inputs])
    reach = np.abs((train[:, :8] - shift) / scale).max(axis=0)
    assert np.all((reach > 0.99) & (reach < 1.01)), reach


def test_its_derivatives_pass_finite_differences_and_the_dot_product_test(built):
    model = built[0].model
    rng = np.random.default_rng(0)
    lo = np.array([f.min for f in model.spec.inputs])
    hi = np.array([f.max for f in model.spec.inputs])
    x = lo + (hi - lo) * rng.uniform(size=(7, 8))
    w = model.get_weights()
    dw = rng.normal(size=w.shape)
    dx = rng.normal(size=x.shape) * (hi - lo) * 1e-2
    h = 1e-6
    fd = (model.evaluate(x + h * dx, w + h * dw) - model.evaluate(x - h * dx, w - h * dw)) / (2 * h)
    got = model.forward_derivative(w, dw, x, dx)
    assert np.abs(got - fd).max() / np.abs(fd).max() < 1e-6
    py = rng.normal(size=(7, 1))
    pw, px = model.gradient(w, x, py)
    left, right = float(np.sum(py * got)), float(np.sum(pw * dw) + np.sum(px * dx))
    scale = np.sum(np.abs(py * got)) + np.sum(np.abs(pw * dw)) + np.sum(np.abs(px * dx))
    assert abs(left - right) <= 1e-10 * scale


def test_the_same_seed_gives_the_same_weights_and_a_new_version(built, tmp_path):
    _, out = built
    kw = dict(outputs=["flow"], architectures=[(3,)], epochs=40, seed=5, progress=False)
    a = gradserve.build(DATA / "borehole_train.csv", out=out, **kw)
    b = gradserve.build(DATA / "borehole_train.csv", **kw)
    assert np.array_equal(a.model.get_weights(), b.model.get_weights())
    assert a.version == 2 and b.version is None
    assert gradserve.ModelRepository(out.parent).versions("borehole") == [1, 2]


def test_arrays_with_given_validation_rows():
    data = np.loadtxt(DATA / "borehole_train.csv", delimiter=",", skiprows=1)[:300]
    names = ["rw", "r", "Tu", "Hu", "Tl", "Hl", "L", "Kw"]
    result = gradserve.build((data[:, :8], data[:, 8]), names, ["flow"], architectures=[(3,)],
                             epochs=30, progress=False, validation=range(0, 300, 4))
    assert result.report.n_validation == 75 and result.report.source == "arrays"
    assert result.model.spec.metadata["build"]["validation_rows"] == list(range(0, 300, 4))
    assert [f.name for f in result.model.spec.inputs] == names


def test_every_source_reads_the_same_numbers(tmp_path):
    """CSV, Parquet, a mapping and arrays give bitwise the same matrices, so the same model."""
    from gradserve.builder import _resolve

    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    data = np.random.default_rng(0).normal(size=(50, 4)) * [1e-3, 1.0, 1e4, 7.0]
    names = ["a", "b", "c", "y"]
    csv = tmp_path / "d.csv"
    np.savetxt(csv, data, delimiter=",", header=",".join(names), comments="", fmt="%.17g")
    pq.write_table(pa.table({n: data[:, j] for j, n in enumerate(names)}), tmp_path / "d.parquet")
    sources = [csv, tmp_path / "d.parquet", {n: data[:, j] for j, n in enumerate(names)}]
    for source in sources:
        table, inputs, outputs = _resolve(source, None, ["y"], "regression")
        assert inputs == ["a", "b", "c"]
        assert np.array_equal(table.numeric(inputs, "input"), data[:, :3])
        assert np.array_equal(table.numeric(outputs, "output"), data[:, 3:])
    table, inputs, outputs = _resolve((data[:, :3], data[:, 3]), None, None, "regression")
    assert (inputs, outputs) == (["x0", "x1", "x2"], ["y0"])
    assert np.array_equal(table.numeric(inputs, "input"), data[:, :3])


def test_classification_from_a_label_column():
    result = gradserve.build(DATA / "classifier_train.csv", outputs=["label"], kind="classification",
                             architectures=[(8,)], epochs=150, progress=False)
    spec = result.model.spec
    assert spec.kind == "classification" and [f.name for f in spec.outputs] == ["inner", "lower", "upper"]
    assert [o.name for o in result.report.outputs] == ["inner", "lower", "upper"]
    assert max(o.validation for o in result.report.outputs) < 0.25  # share misclassified per class
    assert "class" in str(result.report)


def test_compression_searches_the_code_size():
    result = gradserve.build(DATA / "compression_train.csv", kind="compression",
                             architectures=[(8, 1, 8), (8, 2, 8)], epochs=100, progress=False)
    spec = result.model.spec
    assert spec.kind == "compression" and spec.code_layer == "dense1"
    assert [f.name for f in spec.outputs] == [f.name for f in spec.inputs]
    # two hidden factors drive the six sensors: a 2-unit code beats a 1-unit one by far
    assert result.report.chosen == (8, 2, 8)


def test_choose_keeps_the_smallest_within_the_tolerance():
    c = [Candidate((2,), 10, 0.30, 1, 0.0), Candidate((4,), 20, 0.12, 1, 0.0),
         Candidate((8,), 40, 0.10, 1, 0.0), Candidate((16,), 80, float("nan"), 1, 0.0)]
    assert choose(c, 0.25).hidden == (4,)
    assert choose(c, 0.1).hidden == (8,)
    assert choose(c, 5.0).hidden == (2,)
    ladder = default_architectures("regression", 8, 1)
    sizes = [n_weights(8, h, 1) for h in ladder]
    assert sizes == sorted(sizes) and ladder[0] == (2,)
    assert all(len(h) == 3 for h in default_architectures("compression", 6, 6))
