"""Checks at the boundary: every array a caller hands us is checked here, once.

Each check raises InvalidInput with a message that names the array, the expected shape and what
was received, or the first non-finite entry.
"""

from __future__ import annotations

import numpy as np

from .errors import InvalidInput

__all__ = ["as_matrix", "as_vector", "check_finite", "check_rows"]


def _as_float(name: str, value: object, dtype: np.dtype) -> np.ndarray:
    if value is None:
        raise InvalidInput(f"{name} is required")
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError) as exc:  # ragged nested lists
        raise InvalidInput(f"{name} must be a rectangular array of numbers ({exc})") from None
    if arr.dtype.kind not in "fiu":
        raise InvalidInput(
            f"{name} must hold real numbers, got an array of dtype {arr.dtype} "
            "(ragged rows, strings or nulls?)"
        )
    return np.ascontiguousarray(arr, dtype=dtype)


def check_finite(name: str, arr: np.ndarray) -> np.ndarray:
    if not np.isfinite(arr).all():
        index = tuple(int(i) for i in np.argwhere(~np.isfinite(arr))[0])
        raise InvalidInput(f"{name} must be finite; {name}{list(index)} is {arr[index]}")
    return arr


def as_matrix(name: str, value: object, cols: int, dtype: np.dtype, what: str = "") -> np.ndarray:
    """(n, cols) array, n >= 1, finite, in ``dtype``."""
    arr = _as_float(name, value, dtype)
    if arr.ndim != 2 or arr.shape[1] != cols or arr.shape[0] == 0:
        hint = f" ({what})" if what else ""
        raise InvalidInput(
            f"{name} must have shape (n, {cols}) with n >= 1{hint}; got shape {arr.shape}"
        )
    return check_finite(name, arr)


def as_vector(name: str, value: object, size: int, dtype: np.dtype) -> np.ndarray:
    """(size,) from (size, 1) or (size,), finite, in ``dtype``."""
    arr = _as_float(name, value, dtype)
    if arr.shape not in ((size, 1), (size,)):
        raise InvalidInput(f"{name} must have shape ({size}, 1) or ({size},); got shape {arr.shape}")
    return check_finite(name, arr.reshape(size))


def check_rows(name: str, arr: np.ndarray, n: int, other: str = "x") -> None:
    if arr.shape[0] != n:
        raise InvalidInput(
            f"{name} must have as many rows as {other} ({n}); got shape {arr.shape}"
        )
