"""Import a fitted scikit-learn MLP, with the scalers in front of it, as a gradserve model.

Accepted, fitted:

- ``MLPRegressor``; ``MLPClassifier`` (binary or multiclass; multilabel is refused);
- either inside a ``Pipeline`` whose earlier steps are ``StandardScaler``, ``MinMaxScaler``
  (without ``clip``), ``MaxAbsScaler`` or ``"passthrough"``: each is an affine map per feature,
  and their composition becomes the spec's input shift and scale;
- a ``TransformedTargetRegressor`` around either, whose transformer is one of those scalers:
  its inverse becomes the output shift and scale.

Everything else (another step, a custom function) raises UnsupportedModel naming it. The
estimator is an object in memory: gradserve never loads pickled files, since unpickling runs code.

Layer by layer the translation is exact: sklearn computes ``act(h @ coefs_[i] + intercepts_[i])``,
which is the spec's dense layer. A binary classifier's single logistic unit ``p = σ(z)`` becomes a
two-unit softmax over ``(0, z)``, which is ``(1 - p, p)``: ``predict_proba``'s two columns.
"""

from __future__ import annotations

import os
import warnings
from typing import Sequence

import numpy as np

from ..errors import UnsupportedModel
from ..loading import from_arrays
from ..optional import require
from .check import ImportResult, check_inputs, self_check, store

__all__ = ["from_sklearn"]

_ACTIVATIONS = {"identity": "identity", "logistic": "sigmoid", "tanh": "tanh", "relu": "relu"}


def _sklearn():
    return require("sklearn", extra="import", purpose="importing scikit-learn estimators",
                   package="scikit-learn")


def _affine(step, where: str) -> tuple[np.ndarray, np.ndarray, tuple | None]:
    """A scaler as (shift, scale, data range or None): ``scaled = (x - shift) / scale``."""
    pre = require("sklearn.preprocessing", extra="import", purpose="importing scikit-learn "
                  "estimators", package="scikit-learn")
    if isinstance(step, pre.StandardScaler):
        # mean_ is fitted even under with_mean=False (for the variance): the flags decide.
        n = step.n_features_in_
        mean = np.broadcast_to(step.mean_ if step.with_mean else 0.0, (n,))
        scale = np.broadcast_to(step.scale_ if step.with_std else 1.0, (n,))
        spread = np.sqrt(step.var_) if step.var_ is not None else scale
        centre = step.mean_ if step.mean_ is not None else mean
        # mean ± 3 standard deviations: where a roughly normal feature's values lie
        return mean, scale, (centre - 3 * spread, centre + 3 * spread)
    if isinstance(step, pre.MinMaxScaler):
        if step.clip:
            raise UnsupportedModel(f"{where}: MinMaxScaler(clip=True) is not affine; refit "
                                   "without clip")
        # sklearn computes x * scale_ + min_ = (x - (-min_ / scale_)) / (1 / scale_)
        return -step.min_ / step.scale_, 1.0 / step.scale_, (step.data_min_, step.data_max_)
    if isinstance(step, pre.MaxAbsScaler):
        return np.zeros_like(step.scale_), step.scale_, (-step.max_abs_, step.max_abs_)
    raise UnsupportedModel(f"{where}: {type(step).__name__} is not supported (accepted before the "
                           "network: StandardScaler, MinMaxScaler, MaxAbsScaler, 'passthrough')")


def _unwrap(estimator):
    """(mlp, input scalers [(shift, scale, range)], output scaler or None)."""
    sk = _sklearn()
    from sklearn.compose import TransformedTargetRegressor
    from sklearn.pipeline import Pipeline

    out_affine = None
    if isinstance(estimator, TransformedTargetRegressor):
        if not hasattr(estimator, "regressor_"):
            raise UnsupportedModel("the TransformedTargetRegressor is not fitted")
        transformer = estimator.transformer_
        if isinstance(transformer, sk.preprocessing.FunctionTransformer) and \
                transformer.func is None and transformer.inverse_func is None:
            out_affine = None  # the identity TransformedTargetRegressor uses without a transformer
        else:
            out_affine = _affine(transformer, "TransformedTargetRegressor.transformer")
        estimator = estimator.regressor_
    scalers = []
    if isinstance(estimator, Pipeline):
        for step_name, step in estimator.steps[:-1]:
            if step is None or step == "passthrough":
                continue
            scalers.append(_affine(step, f"pipeline step {step_name!r}"))
        estimator = estimator.steps[-1][1]
    nn = sk.neural_network
    if not isinstance(estimator, (nn.MLPRegressor, nn.MLPClassifier)):
        raise UnsupportedModel(f"{type(estimator).__name__} is not supported: the network must be "
                               "an MLPRegressor or MLPClassifier")
    if not hasattr(estimator, "coefs_"):
        raise UnsupportedModel(f"the {type(estimator).__name__} is not fitted")
    return estimator, scalers, out_affine


def _compose(scalers, m: int) -> tuple[np.ndarray, np.ndarray, tuple | None]:
    """Scalers applied in order -> one (shift, scale): (((x - a1)/b1) - a2)/b2 = (x - a)/b with
    a = a1 + a2 b1, b = b1 b2. The range is the first scaler's, which is in raw units."""
    shift, scale, first_range = np.zeros(m), np.ones(m), None
    for a, b, rng in scalers:
        shift, scale = shift + np.asarray(a, float) * scale, scale * np.asarray(b, float)
        first_range = first_range if first_range is not None else rng
    return shift, scale, first_range


def from_sklearn(estimator, *, input_names: Sequence[str] | None = None,
                 output_names: Sequence[str] | None = None, input_range=None,
                 name: str = "model", out: str | os.PathLike | None = None,
                 n_check: int = 256, seed: int = 0) -> ImportResult:
    """Translate a fitted estimator, check it against ``predict`` / ``predict_proba`` on
    ``n_check`` random inputs, and with ``out`` (``REPO/NAME``) store it as a new version.

    input_names: default the estimator's ``feature_names_in_`` (fitted on a DataFrame), else
    x0, x1, ...; output_names: default the classes (classifier) or y0, y1, ... input_range:
    (min, max) per feature, recorded in the spec and used to draw the check inputs; default the
    scaler's data range (MinMaxScaler, MaxAbsScaler), mean ± 3 std (StandardScaler), else the
    range that normalises to [-1, 1].
    """
    mlp, scalers, out_affine = _unwrap(estimator)
    sk = _sklearn()
    kernels = [np.asarray(c, dtype=np.float64) for c in mlp.coefs_]
    biases = [np.asarray(b, dtype=np.float64) for b in mlp.intercepts_]
    m = kernels[0].shape[0]
    if mlp.activation not in _ACTIVATIONS:
        raise UnsupportedModel(f"activation {mlp.activation!r} is not supported")
    acts = [_ACTIVATIONS[mlp.activation]] * (len(kernels) - 1)
    is_classifier = isinstance(mlp, sk.neural_network.MLPClassifier)
    if is_classifier:
        if mlp._label_binarizer.y_type_ == "multilabel-indicator":
            raise UnsupportedModel("a multilabel MLPClassifier (independent logistic outputs) is "
                                   "not supported: a classification model's outputs are a softmax")
        if mlp.out_activation_ == "logistic":  # binary: σ(z) -> softmax(0, z)
            kernels[-1] = np.hstack([np.zeros_like(kernels[-1]), kernels[-1]])
            biases[-1] = np.concatenate([np.zeros(1), biases[-1]])
        acts.append("softmax")
        default_out = [str(c) for c in mlp.classes_]
    else:
        acts.append("identity")
        default_out = [f"y{j}" for j in range(kernels[-1].shape[1])]
    shift, scale, data_range = _compose(scalers, m)
    names = input_names if input_names is not None else (
        [str(c) for c in estimator.feature_names_in_] if hasattr(estimator, "feature_names_in_")
        else None)
    in_range = input_range if input_range is not None else data_range
    out_shift = out_scale = None
    if out_affine is not None:
        out_shift, out_scale = out_affine[0], out_affine[1]
    precision = str(np.asarray(mlp.coefs_[0]).dtype)
    model = from_arrays(
        kernels, biases, acts, kind="classification" if is_classifier else "regression",
        input_names=names, output_names=output_names or default_out,
        input_shift=shift, input_scale=scale, input_range=in_range,
        output_shift=out_shift, output_scale=out_scale,
        output_range=(0.0, 1.0) if is_classifier else None, name=name,
        metadata={"import": {"source": "scikit-learn", "estimator": type(estimator).__name__,
                             "network": type(mlp).__name__, "sklearn_version": sk.__version__}})
    lo = np.array([f.min for f in model.spec.inputs])
    hi = np.array([f.max for f in model.spec.inputs])
    x = check_inputs(lo, hi, n_check, seed)
    predict = estimator.predict_proba if is_classifier else estimator.predict

    def reference(xx: np.ndarray) -> np.ndarray:
        with warnings.catch_warnings():  # "X does not have valid feature names": it need not
            warnings.simplefilter("ignore", UserWarning)
            return predict(xx.astype(precision))

    source = f"scikit-learn {type(estimator).__name__}"
    error, tolerance = self_check(model, reference, x,
                                  precision if precision in ("float32", "float64") else "float64",
                                  source)
    return store(ImportResult(model, source, error, tolerance, n_check), out)
