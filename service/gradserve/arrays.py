"""Checks at the boundary: every array a caller hands us is checked here, once, and every result
the service hands back for finiteness (``finite_result``).

Each check raises InvalidInput with a message that names the array, the expected shape and what
was received, or the first non-finite entry. ``finite=False`` leaves the entries to a later
``check_finite`` (the engine checks a call's entries on the thread that runs it).
"""

from __future__ import annotations

import numpy as np

from .errors import InvalidInput

__all__ = ["all_finite", "as_matrix", "as_stack", "as_vector", "check_finite", "check_rows",
           "check_same_count", "finite_result", "shape_of", "stacked_count"]


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


def all_finite(arrays) -> bool:
    """Whether every entry of every array is finite: one numpy call per array."""
    return all(np.isfinite(arr).all() for arr in arrays)


def finite_result(method: str, result):
    """``result`` of ``method`` (an array or a tuple of arrays), or, if an entry is not finite,
    the InvalidInput that refuses it in its place."""
    if all_finite(result if isinstance(result, tuple) else (result,)):
        return result
    return InvalidInput(f"{method} produced a non-finite result (overflow): the inputs are "
                        "probably far outside the range the model was trained on")


def as_matrix(name: str, value: object, cols: int, dtype: np.dtype, what: str = "",
              finite: bool = True) -> np.ndarray:
    """(n, cols) array, n >= 1, finite (unless ``finite=False``), in ``dtype``."""
    arr = _as_float(name, value, dtype)
    if arr.ndim != 2 or arr.shape[1] != cols or arr.shape[0] == 0:
        hint = f" ({what})" if what else ""
        raise InvalidInput(
            f"{name} must have shape (n, {cols}) with n >= 1{hint}; got shape {arr.shape}"
        )
    return check_finite(name, arr) if finite else arr


def as_vector(name: str, value: object, size: int, dtype: np.dtype,
              finite: bool = True) -> np.ndarray:
    """(size,) from (size, 1) or (size,), finite (unless ``finite=False``), in ``dtype``."""
    arr = _as_float(name, value, dtype)
    if arr.shape not in ((size, 1), (size,)):
        raise InvalidInput(f"{name} must have shape ({size}, 1) or ({size},); got shape {arr.shape}")
    arr = arr.reshape(size)
    return check_finite(name, arr) if finite else arr


def as_stack(name: str, value: object, shape: tuple[int, ...], dtype: np.dtype,
             what: str = "", finite: bool = True) -> np.ndarray:
    """(*shape, r), r >= 1, finite (unless ``finite=False``), in ``dtype``: r directions stacked
    on the last axis."""
    arr = _as_float(name, value, dtype)
    if arr.ndim != len(shape) + 1 or arr.shape[:-1] != tuple(shape) or arr.shape[-1] == 0:
        expected = "(" + ", ".join(str(s) for s in shape) + ", r)"
        hint = f" ({what})" if what else ""
        raise InvalidInput(f"{name} must have shape {expected} with r >= 1{hint}; got shape {arr.shape}")
    return check_finite(name, arr) if finite else arr


def shape_of(value: object) -> tuple[int, ...] | None:
    """The shape ``value`` would have as an array, or None (absent, ragged, not numeric): for
    choosing a call's form before the checks that explain what is wrong."""
    if value is None:
        return None
    try:
        return tuple(np.shape(value))
    except (ValueError, TypeError):
        return None


def check_rows(name: str, arr: np.ndarray, n: int, other: str = "x") -> None:
    if arr.shape[0] != n:
        raise InvalidInput(
            f"{name} must have as many rows as {other} ({n}); got shape {arr.shape}"
        )


def stacked_count(a_shape: tuple | None, a_axes: int, b_shape: tuple | None, b_axes: int) -> int | None:
    """r when a call with direction arguments a and b (given as shapes, ``*_axes`` the number of
    axes of their single forms) is in the stacked form, else None.

    b with one axis more than its single form asks for it (dx (n, m, r)); so does a with one
    axis more and r > 1 (dw (p, r)). dw (p, 1) stays the single form unless b says otherwise.
    """
    if b_shape is not None and len(b_shape) == b_axes + 1:
        return b_shape[-1]
    if a_shape is not None and len(a_shape) == a_axes + 1 and a_shape[-1] != 1:
        return a_shape[-1]
    return None


def check_same_count(a_name: str, a: np.ndarray, b_name: str, b: np.ndarray) -> None:
    if a.shape[-1] != b.shape[-1]:
        raise InvalidInput(f"{a_name} has {a.shape[-1]} directions (last axis) and {b_name} has "
                           f"{b.shape[-1]}: give the same number of directions to both")
