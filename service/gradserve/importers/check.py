"""What every importer shares: the self-check against the source, the result, and storing it.

An importer translates a model from another tool into a spec and a flat weight vector, then
proves the translation: it evaluates the new model and the source on the same random inputs and
raises ImportCheckFailed if they differ by more than the tolerance of the source's precision.
Nothing is written before that check passes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..engine import Model
from ..errors import ImportCheckFailed
from ..repository import ModelRepository

__all__ = ["ImportResult", "TOLERANCE", "check_inputs", "self_check", "store"]

# Largest |imported - source| allowed, relative to the largest |source output| (at least 1), by
# the precision the source computes in. float64 sources agree to rounding (measured ~1e-15);
# float32 ones differ by their own rounding, which grows with depth (measured ~1e-7).
TOLERANCE = {"float64": 1e-10, "float32": 1e-5}


@dataclass(frozen=True)
class ImportResult:
    """The imported model, how closely it reproduced its source, and where it was stored."""

    model: Model
    source: str
    max_error: float
    tolerance: float
    n_checked: int
    version: int | None = None
    path: str | None = None

    @property
    def n_weights(self) -> int:
        return self.model.n_weights

    def summary(self) -> str:
        spec = self.model.spec
        layers = " -> ".join([str(spec.n_inputs)] + [f"{layer.units} {layer.activation}"
                                                      for layer in spec.layers])
        where = f" -> {self.path} version {self.version}" if self.version is not None else ""
        return (f"imported {self.source}{where}\n"
                f"{spec.kind}: {layers}, p = {self.model.n_weights}\n"
                f"check: {self.n_checked} random inputs, largest relative difference "
                f"{self.max_error:.2e} (tolerance {self.tolerance:.0e})")


def check_inputs(lo: np.ndarray, hi: np.ndarray, n: int, seed: int) -> np.ndarray:
    """(n, m) inputs drawn uniformly from the ranges widened by half their span on each side:
    the check also covers inputs a little outside what the model was fitted on."""
    span = np.where(hi > lo, hi - lo, 1.0)
    rng = np.random.default_rng(seed)
    return (lo - span / 2) + 2 * span * rng.uniform(size=(n, len(lo)))


def self_check(model: Model, reference: Callable[[np.ndarray], np.ndarray], x: np.ndarray,
               precision: str, source: str) -> tuple[float, float]:
    """Compare ``model.evaluate(x)`` with ``reference(x)`` (both (n, k)); returns
    (largest relative difference, tolerance) or raises ImportCheckFailed."""
    tolerance = TOLERANCE[precision]
    ours = model.evaluate(x)
    theirs = np.asarray(reference(x), dtype=np.float64).reshape(ours.shape)
    scale = max(1.0, float(np.abs(theirs).max()))
    diff = np.abs(ours - theirs)
    error = float(diff.max()) / scale
    if not error <= tolerance:  # also catches NaN
        row, col = np.unravel_index(int(np.nanargmax(diff)), diff.shape)
        raise ImportCheckFailed(
            f"the model imported from {source} does not reproduce it: output "
            f"{model.spec.outputs[col].name!r} at check input {row} is {ours[row, col]!r} here and "
            f"{theirs[row, col]!r} there (relative difference {error:.2e}, tolerance "
            f"{tolerance:.0e} for a {precision} source); nothing was written")
    return error, tolerance


def store(result: ImportResult, out: str | os.PathLike | None) -> ImportResult:
    """Write the model as a new version of ``out`` (``REPO/NAME``), through the repository's
    atomic write; returns the result with its version and path."""
    if out is None:
        return result
    folder = Path(out)
    model = result.model
    version = ModelRepository(folder.parent).write(folder.name, model.spec, model.get_weights())
    model.replace_weights(model.snapshot()[0], version)
    return ImportResult(model, result.source, result.max_error, result.tolerance,
                        result.n_checked, version, str(folder))
