"""from_sklearn against real fitted estimators: outputs match predict / predict_proba, scalers in
a Pipeline (and a TransformedTargetRegressor) become the spec's normalisation, and what cannot be
expressed is refused by name."""

import warnings

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")
from sklearn.compose import TransformedTargetRegressor  # noqa: E402
from sklearn.decomposition import PCA  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.neural_network import MLPClassifier, MLPRegressor  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import MaxAbsScaler, MinMaxScaler, StandardScaler  # noqa: E402

import gradserve  # noqa: E402
from gradserve.errors import UnsupportedModel  # noqa: E402
from gradserve.importers import from_sklearn  # noqa: E402

RNG = np.random.default_rng(0)
# Unnormalised on purpose: the scalers have real work to do.
X = RNG.normal(size=(200, 4)) * [1.0, 50.0, 0.01, 3.0] + [0.0, 400.0, 2.0, -7.0]
Z = (X - X.mean(0)) / X.std(0)
Y = np.column_stack([np.sin(Z[:, 0]) + Z[:, 1] * Z[:, 2], Z[:, 3] ** 2]) * [10.0, 0.5] + [100.0, 1.0]
LABELS = (Z[:, 0] > 0).astype(int) + (Z[:, 1] > 0.5).astype(int)  # 3 classes


def fit(estimator, x, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return estimator.fit(x, y)


def fresh_inputs(n=50):
    return np.random.default_rng(1).normal(size=(n, 4)) * X.std(0) * 1.5 + X.mean(0)


def mlp(cls, **kw):
    return cls(hidden_layer_sizes=(12, 6), max_iter=150, random_state=0, **kw)


@pytest.mark.parametrize("make", [
    lambda: fit(mlp(MLPRegressor, activation="tanh"), Z, Y),
    lambda: fit(make_pipeline(StandardScaler(), mlp(MLPRegressor, activation="relu")), X, Y),
    lambda: fit(make_pipeline(MinMaxScaler(), mlp(MLPRegressor, activation="logistic")), X, Y[:, 0]),
    lambda: fit(make_pipeline(StandardScaler(), MinMaxScaler((-1, 1)), MaxAbsScaler(),
                              mlp(MLPRegressor, activation="tanh")), X, Y),
    lambda: fit(TransformedTargetRegressor(make_pipeline(StandardScaler(), mlp(MLPRegressor)),
                                           transformer=StandardScaler()), X, Y),
], ids=["plain", "standard", "minmax-1d", "chained-scalers", "target-scaler"])
def test_regressors_match_predict(make):
    est = make()
    result = from_sklearn(est)
    assert result.max_error < 1e-12 and result.n_checked == 256
    x = fresh_inputs()
    want = est.predict(x).reshape(len(x), -1)
    np.testing.assert_allclose(result.model.evaluate(x), want, rtol=1e-12, atol=1e-12 * np.abs(want).max())
    assert result.model.spec.kind == "regression"


@pytest.mark.parametrize("make, n_classes", [
    (lambda: fit(mlp(MLPClassifier, activation="relu"), Z, LABELS), 3),
    (lambda: fit(make_pipeline(StandardScaler(), mlp(MLPClassifier)), X, LABELS), 3),
    (lambda: fit(make_pipeline(MinMaxScaler(), mlp(MLPClassifier, activation="tanh")), X,
                 np.where(LABELS > 0, "yes", "no")), 2),
], ids=["multiclass", "standard", "binary-minmax"])
def test_classifiers_match_predict_proba(make, n_classes):
    est = make()
    result = from_sklearn(est)
    x = fresh_inputs()
    np.testing.assert_allclose(result.model.evaluate(x), est.predict_proba(x), rtol=1e-12, atol=1e-14)
    spec = result.model.spec
    assert spec.kind == "classification" and spec.layers[-1].activation == "softmax"
    assert [f.name for f in spec.outputs] == [str(c) for c in est.classes_]
    assert len(spec.outputs) == n_classes


def test_the_scalers_become_the_spec_normalisation_and_ranges():
    est = fit(make_pipeline(MinMaxScaler(), mlp(MLPRegressor)), X, Y)
    spec = from_sklearn(est, input_names=["a", "b", "c", "d"], output_names=["u", "v"]).model.spec
    scaler = est[0]
    for j, f in enumerate(spec.inputs):
        assert (f.min, f.max) == (scaler.data_min_[j], scaler.data_max_[j])
        # the normalised feature is what the scaler produced: 0 at the data minimum
        assert (f.min - f.shift) / f.scale == pytest.approx(0.0, abs=1e-12)
    assert [f.name for f in spec.inputs] == ["a", "b", "c", "d"]
    assert [f.name for f in spec.outputs] == ["u", "v"]
    assert spec.metadata["import"]["estimator"] == "Pipeline"


def test_float32_estimators_are_checked_at_float32_tolerance():
    est = fit(mlp(MLPRegressor), Z.astype(np.float32), Y.astype(np.float32))
    result = from_sklearn(est)
    assert result.tolerance == 1e-5 and result.max_error < 1e-5
    assert result.model.dtype == np.float64


def test_stored_and_served_as_a_new_version(tmp_path):
    est = fit(make_pipeline(StandardScaler(), mlp(MLPRegressor)), X, Y)
    result = from_sklearn(est, out=tmp_path / "repo" / "sk")
    assert result.version == 1 and "version 1" in result.summary()
    loaded = gradserve.load_model(tmp_path / "repo" / "sk")
    np.testing.assert_array_equal(loaded.get_weights(), result.model.get_weights())


@pytest.mark.parametrize("make, words", [
    (lambda: fit(make_pipeline(PCA(2), mlp(MLPRegressor)), X, Y), "PCA is not supported"),
    (lambda: fit(make_pipeline(MinMaxScaler(clip=True), mlp(MLPRegressor)), X, Y), "clip=True"),
    (lambda: mlp(MLPRegressor), "not fitted"),
    (lambda: fit(mlp(MLPClassifier), Z, np.column_stack([LABELS == 1, LABELS == 2]).astype(int)),
     "multilabel"),
    (lambda: StandardScaler().fit(X), "StandardScaler is not supported: the network must be"),
])
def test_what_cannot_be_expressed_is_refused_by_name(make, words):
    with pytest.raises(UnsupportedModel, match=words):
        from_sklearn(make())
