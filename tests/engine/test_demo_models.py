"""The bundled demo models load, have the documented shapes, and still meet their documented
held-out accuracy when recomputed from the test data in service/demo/data."""

import csv
from pathlib import Path

import numpy as np
import pytest

import gradserve

DATA = Path(__file__).resolve().parents[2] / "service" / "demo" / "data"
BOREHOLE_INPUTS = ["rw", "r", "Tu", "Hu", "Tl", "Hl", "L", "Kw"]
# The bounds stated in service/gradserve/demo_models/README.md.
BOREHOLE_RELATIVE_RMSE = 0.005
CLASSIFIER_ACCURACY = 0.97
COMPRESSION_RMSE = 0.02


def load(name):
    return gradserve.load_model(gradserve.demo_repository() + "/" + name)


def read_csv(name):
    with (DATA / f"{name}_test.csv").open(newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


def test_the_repository_holds_the_three_models_at_version_1():
    repo = gradserve.ModelRepository(gradserve.demo_repository())
    assert repo.model_names() == ["borehole", "classifier", "compression"]
    assert all(repo.versions(name) == [1] for name in repo.model_names())
    weights = sum(p.stat().st_size for p in Path(repo.root).rglob("*.safetensors"))
    assert weights < 200_000


def test_borehole():
    model = load("borehole")
    assert model.spec.kind == "regression" and model.version == 1
    assert [f.name for f in model.spec.inputs] == BOREHOLE_INPUTS
    assert [f.name for f in model.spec.outputs] == ["flow"]
    assert (model.n_inputs, model.n_outputs, model.n_weights) == (8, 1, 1377)
    header, rows = read_csv("borehole")
    assert header == BOREHOLE_INPUTS + ["flow"]
    data = np.array(rows, dtype=np.float64)
    assert data.shape == (500, 9)
    pred = model.evaluate(data[:, :8])
    assert pred.shape == (500, 1)
    rmse = np.sqrt(np.mean((pred[:, 0] - data[:, 8]) ** 2))
    relative = rmse / np.std(data[:, 8])
    assert relative < BOREHOLE_RELATIVE_RMSE, relative
    assert model.spec.metadata["test"]["relative_rmse"] == pytest.approx(relative, rel=1e-6)


def test_classifier():
    model = load("classifier")
    assert model.spec.kind == "classification"
    classes = [f.name for f in model.spec.outputs]
    assert classes == ["inner", "upper", "lower"]
    assert (model.n_inputs, model.n_outputs) == (2, 3)
    header, rows = read_csv("classifier")
    assert header == ["x1", "x2", "label"]
    x = np.array([r[:2] for r in rows], dtype=np.float64)
    labels = np.array([classes.index(r[2]) for r in rows])
    p = model.evaluate(x)
    assert p.shape == (len(rows), 3)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-12)
    accuracy = np.mean(p.argmax(axis=1) == labels)
    assert accuracy >= CLASSIFIER_ACCURACY, accuracy
    assert model.spec.metadata["test"]["accuracy"] == pytest.approx(accuracy)


def test_compression():
    model = load("compression")
    spec = model.spec
    assert spec.kind == "compression" and spec.code_layer is not None
    names = [f.name for f in spec.inputs]
    assert [f.name for f in spec.outputs] == names and len(names) == 6
    code = {layer.name: layer for layer in spec.layers}[spec.code_layer]
    assert code.units == 2
    header, rows = read_csv("compression")
    assert header == names
    x = np.array(rows, dtype=np.float64)
    y = model.evaluate(x)
    assert y.shape == x.shape
    rmse = np.sqrt(np.mean((y - x) ** 2))
    assert rmse < COMPRESSION_RMSE, rmse
    assert spec.metadata["test"]["rmse"] == pytest.approx(rmse, rel=1e-6)


@pytest.mark.parametrize("name", ["borehole", "classifier", "compression"])
def test_gradients_of_a_demo_model_match_finite_differences(name):
    # The demo models exist to show derivatives: check one directional derivative numerically.
    model = load(name)
    _, rows = read_csv(name)
    m = model.n_inputs
    x = np.array([r[:m] for r in rows[:4]], dtype=np.float64)
    dx = np.array([f.max - f.min for f in model.spec.inputs]) * 1e-3 * np.ones_like(x)
    dw = np.zeros((model.n_weights, 1))
    dy = model.forward_derivative(None, dw, x, dx)
    h = 1e-4
    y = model.evaluate(x)
    fd = (model.evaluate(x + h * dx) - model.evaluate(x - h * dx)) / (2 * h)
    # Central differences are good to about h^2 relative, and to eps |y| / h absolute (rounding).
    np.testing.assert_allclose(dy, fd, rtol=1e-5, atol=1e-9 * max(1.0, np.abs(y).max()))
