"""Small models for tests: random non-sequential graphs and their inputs."""

from __future__ import annotations

import numpy as np
import gradserve
from gradserve.spec import FORMAT_VERSION, Feature, Layer, ModelSpec


def random_graph_spec(seed: int, m: int = 4, k: int = 2, kind: str = "regression",
                      dtype: str = "float64") -> ModelSpec:
    """A non-sequential graph: every layer reads a random non-empty subset of earlier nodes,
    so skip connections and concatenations are exercised, with a mix of activations."""
    rng = np.random.default_rng(seed)
    acts = ["tanh", "relu", "sigmoid", "softplus", "gelu", "silu", "identity"]
    nodes, layers = ["input"], []
    for i in range(int(rng.integers(2, 5))):
        picks = sorted(set(rng.choice(nodes, size=int(rng.integers(1, len(nodes) + 1)))),
                       key=nodes.index)
        layers.append(Layer(name=f"h{i}", inputs=list(picks), units=int(rng.integers(2, 7)),
                            activation=str(rng.choice(acts))))
        nodes.append(f"h{i}")
    last_inputs = sorted({nodes[-1], *rng.choice(nodes, size=2)}, key=nodes.index)
    layers.append(Layer(name="out", inputs=last_inputs, units=k,
                        activation="softmax" if kind == "classification" else "identity"))
    def feats(prefix, count, normalised):
        out = []
        for j in range(count):
            shift = float(rng.normal()) if normalised else 0.0
            scale = float(rng.uniform(0.5, 3.0)) if normalised else 1.0
            out.append(Feature(name=f"{prefix}{j}", min=shift - scale, max=shift + scale,
                               shift=shift, scale=scale))
        return out
    return ModelSpec(format_version=FORMAT_VERSION, kind=kind, dtype=dtype,
                     inputs=feats("x", m, True), outputs=feats("y", k, kind != "classification"),
                     layers=layers)


def random_model(seed: int, buckets: tuple[int, ...] = (1, 4, 16),
                 direction_buckets: tuple[int, ...] = (2, 4), **kwargs) -> gradserve.Model:
    """Small buckets, so that tests cross them: more rows than 16, more directions than 4."""
    spec = random_graph_spec(seed, **kwargs)
    rng = np.random.default_rng(seed + 1000)
    w = rng.normal(scale=0.7, size=spec.n_weights)
    return gradserve.Model(spec, w, name=f"graph{seed}", buckets=buckets,
                           direction_buckets=direction_buckets)


def random_inputs(model: gradserve.Model, n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    lo = np.array([f.min for f in model.spec.inputs])
    hi = np.array([f.max for f in model.spec.inputs])
    return lo + (hi - lo) * rng.uniform(size=(n, model.n_inputs))
