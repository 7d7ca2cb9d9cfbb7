"""Load a model from disk, save one, or build one from plain numpy arrays."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from .engine import DEFAULT_BUCKETS, Model
from .errors import ModelFormatError
from .network import join_weights
from .repository import SPEC_FILE, ModelRepository, read_version
from .spec import FORMAT_VERSION, INPUT_NODE, Feature, Layer, ModelSpec

__all__ = ["load_model", "save_model", "from_arrays"]


def load_model(path: str | os.PathLike, *, version: int | None = None,
               buckets: tuple[int, ...] = DEFAULT_BUCKETS, warmup: bool = False) -> Model:
    """Load a model folder (its latest version, or ``version``) or a single version folder.

    ``warmup=True`` compiles every bucket now rather than on first use.
    Raises ModelFormatError naming the file and field when something on disk is malformed.
    """
    path = Path(path)
    if (path / SPEC_FILE).is_file() or (path.name.isdigit() and path.is_dir()):
        spec, weights = read_version(path)
        name = path.parent.name if path.name.isdigit() else path.name
        number = int(path.name) if path.name.isdigit() else 0
    elif path.is_dir():
        spec, weights, number = ModelRepository(path.parent).read(path.name, version)
        name = path.name
    else:
        raise ModelFormatError(path, None, "is neither a model folder (numbered version folders) "
                               f"nor a version folder (holding {SPEC_FILE})")
    model = Model(spec, weights, name=name, version=number, buckets=buckets)
    return model.warmup() if warmup else model


def save_model(model: Model, folder: str | os.PathLike) -> int:
    """Store the model's spec and current weights as a new version of ``folder``
    (``<repo>/<name>``); returns the new version number."""
    folder = Path(folder)
    return ModelRepository(folder.parent).write(folder.name, model.spec, model.get_weights())


def _features(names, shift, scale, bounds, count, prefix) -> list[Feature]:
    names = list(names) if names is not None else [f"{prefix}{i}" for i in range(count)]
    shift = np.zeros(count) if shift is None else np.broadcast_to(np.asarray(shift, float), (count,))
    scale = np.ones(count) if scale is None else np.broadcast_to(np.asarray(scale, float), (count,))
    if bounds is None:  # the raw range that normalises to [-1, 1]
        bounds = (shift - np.abs(scale), shift + np.abs(scale))
    lo = np.broadcast_to(np.asarray(bounds[0], float), (count,))
    hi = np.broadcast_to(np.asarray(bounds[1], float), (count,))
    if len(names) != count:
        raise ValueError(f"expected {count} {prefix} names, got {len(names)}")
    return [Feature(name=n, shift=float(a), scale=float(b), min=float(c), max=float(d))
            for n, a, b, c, d in zip(names, shift, scale, lo, hi)]


def from_arrays(kernels: Sequence[np.ndarray], biases: Sequence[np.ndarray],
                activations: Sequence[str], *, kind: str = "regression", dtype: str = "float64",
                input_names: Sequence[str] | None = None, output_names: Sequence[str] | None = None,
                input_shift=None, input_scale=None, output_shift=None, output_scale=None,
                input_range=None, output_range=None, code_layer: int | None = None,
                name: str = "model", buckets: tuple[int, ...] = DEFAULT_BUCKETS,
                metadata: dict | None = None) -> Model:
    """Build a chain MLP from its weight matrices, e.g. one trained elsewhere.

    kernels[i]: (fan_in, units), applied as ``h @ W + b`` (a PyTorch ``nn.Linear.weight`` is
    (units, fan_in): pass its transpose). Normalisation: ``(x - input_shift) / input_scale`` on the
    way in, ``y * output_scale + output_shift`` on the way out (per feature or scalar; default
    none). ``input_range``/``output_range``: (min, max) seen in training, default the range that
    normalises to [-1, 1]. ``code_layer``: for ``kind="compression"``, the index of the code layer.
    For graphs with skip connections, write a ModelSpec and use ``Model(spec, weights)``.
    """
    if not (len(kernels) == len(biases) == len(activations)) or not kernels:
        raise ValueError("kernels, biases and activations must be non-empty and of one length")
    m, k = np.shape(kernels[0])[0], np.shape(kernels[-1])[1]
    layers, previous = [], INPUT_NODE
    for i, (kernel, act) in enumerate(zip(kernels, activations)):
        layers.append(Layer(name=f"dense{i}", inputs=[previous], units=int(np.shape(kernel)[1]),
                            activation=act))
        previous = layers[-1].name
    spec = ModelSpec(
        format_version=FORMAT_VERSION, kind=kind, dtype=dtype,
        inputs=_features(input_names, input_shift, input_scale, input_range, m, "x"),
        outputs=_features(output_names, output_shift, output_scale, output_range, k, "y"),
        layers=layers, code_layer=None if code_layer is None else layers[code_layer].name,
        metadata=metadata or {},
    )
    tensors = {}
    for layer, kernel, bias in zip(layers, kernels, biases):
        tensors[f"{layer.name}.weight"] = np.asarray(kernel)
        tensors[f"{layer.name}.bias"] = np.asarray(bias)
    for (tname, shape) in spec.weight_shapes():
        if tensors[tname].shape != shape:
            raise ValueError(f"{tname} has shape {tensors[tname].shape}; expected {shape}")
    return Model(spec, join_weights(spec, tensors), name=name, buckets=buckets)
