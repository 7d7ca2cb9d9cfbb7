"""Per-feature normalisation computed from data: ``normalised = (raw - shift) / scale``.

The choices are NeurEco Tabular's, so a model built here normalises as one built there would:

    shift   none: 0 · min: min(x) · min_centered: (min(x) + max(x)) / 2 · mean: mean(x)
    scale   none: 1 · max: max(x) - shift · max_centered: (max(x) - min(x)) / 2 · std: std(x)
    auto    shift mean if the mean is far from 0 (|mean| > 0.1 (max - min)), else none; scale
            max |x - shift|, so the normalised column lies in [-1, 1] and touches one end.

``auto`` uses the largest absolute deviation where NeurEco's ``max`` takes ``max(x) - shift``:
the two agree for a column whose maximum is its largest deviation, and the absolute form never
gives a zero or negative scale (a column of negative numbers under shift none).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from .errors import BadData

__all__ = ["SHIFTS", "SCALES", "Choice", "resolve_choices", "shift_scale"]

SHIFTS = ("none", "min", "min_centered", "mean", "auto")
SCALES = ("none", "max", "max_centered", "std", "auto")
# A column's mean is "far from 0" when it exceeds this share of the column's range.
_FAR_FROM_ZERO = 0.1

# One choice for every feature, one per feature (in order), or a default plus named overrides:
# {"*": "mean", "Tu": "min"} (a mapping without "*" leaves the others at the caller's default).
Choice = str | Sequence[str] | Mapping[str, str]


def resolve_choices(choice: Choice, names: Sequence[str], allowed: Sequence[str], what: str,
                    default: str = "auto") -> list[str]:
    """One validated choice per feature name."""
    if isinstance(choice, str):
        out = [choice] * len(names)
    elif isinstance(choice, Mapping):
        unknown = sorted(set(choice) - set(names) - {"*"})
        if unknown:
            raise BadData(f"{what}: {unknown[0]!r} is not one of the columns {list(names)}")
        out = [choice.get(n, choice.get("*", default)) for n in names]
    else:
        out = list(choice)
        if len(out) != len(names):
            raise BadData(f"{what}: {len(out)} choices for {len(names)} columns {list(names)}")
    for name, value in zip(names, out):
        if value not in allowed:
            raise BadData(f"{what} for column {name!r}: {value!r} is not one of {list(allowed)}")
    return out


def shift_scale(data: np.ndarray, names: Sequence[str], shifts: Sequence[str],
                scales: Sequence[str], *, strict: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(shift (c,), scale (c,)) of each column of ``data`` (n, c) under the given choices.

    strict: a zero or non-finite scale raises BadData naming the column; otherwise that column
    is left unscaled (scale 1), as a lenient caller such as ``train_mlp`` wants for a constant
    column.
    """
    data = np.asarray(data, dtype=np.float64)
    # Whole-matrix reductions, then a pick per column: the same floating-point sums as
    # ``data.mean(axis=0)``, so models trained before the choices existed come out bitwise alike.
    lo, hi, mean = data.min(axis=0), data.max(axis=0), data.mean(axis=0)
    far = np.abs(mean) > _FAR_FROM_ZERO * (hi - lo)
    shift_of = {"none": np.zeros_like(mean), "min": lo, "min_centered": 0.5 * (lo + hi),
                "mean": mean, "auto": np.where(far, mean, 0.0)}
    shift = np.array([shift_of[how][j] for j, how in enumerate(shifts)])
    scale_of = {"none": np.ones_like(mean), "max": hi - shift, "max_centered": 0.5 * (hi - lo),
                "std": data.std(axis=0), "auto": np.abs(data - shift).max(axis=0)}
    scale = np.array([scale_of[how][j] for j, how in enumerate(scales)])
    for j in np.flatnonzero((scale == 0) | ~np.isfinite(scale)):
        if strict:
            raise BadData(
                f"column {names[j]!r}: scale {scales[j]!r} gives {scale[j]} (shift {shifts[j]!r} = "
                f"{shift[j]:.6g}, values from {lo[j]:.6g} to {hi[j]:.6g}); choose another scale")
        scale[j] = 1.0
    return shift, scale
