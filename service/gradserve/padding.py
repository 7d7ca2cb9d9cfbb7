"""Fixed shapes from any request: pad to a bucket, cut into chunks, put the answers back together.

Rows are padded up to a row bucket and directions (the last axis of a many-direction argument) to
a direction bucket; inputs larger than the largest bucket are cut into chunks of it. Pad rows of
x hold the input shift (normalised zero, so every activation stays finite); pad rows of tangents
and cotangents, and pad directions, are zero, so they add nothing to a sum over rows.
"""

from __future__ import annotations

import numpy as np

__all__ = ["smallest", "pad_rows", "pad_directions", "outputs", "combine"]


def smallest(sizes: tuple[int, ...], n: int) -> int:
    """The smallest of ``sizes`` (sorted) that holds n; the largest when none does (the caller
    then cuts chunks of it)."""
    for size in sizes:
        if size >= n:
            return size
    return sizes[-1]


def pad_rows(a: np.ndarray, bucket: int, fill: np.ndarray | None = None) -> np.ndarray:
    """``a`` with rows appended up to ``bucket``: copies of ``fill`` (a row), else zeros."""
    if a.shape[0] == bucket:
        return a
    row = np.zeros(a.shape[1:], a.dtype) if fill is None else fill
    return np.concatenate([a, np.broadcast_to(row, (bucket - a.shape[0], *a.shape[1:]))])


def pad_directions(a: np.ndarray, size: int) -> np.ndarray:
    """``a`` with zero directions appended on its last axis up to ``size``."""
    if a.shape[-1] == size:
        return a
    return np.concatenate([a, np.zeros((*a.shape[:-1], size - a.shape[-1]), a.dtype)], axis=-1)


def outputs(out) -> list[np.ndarray]:
    """A kernel's output (an array or a tuple of them) as a list of numpy arrays."""
    return [np.asarray(o) for o in (out if isinstance(out, tuple) else (out,))]


def combine(pieces: list[np.ndarray], summed: bool, axis: int) -> np.ndarray:
    """The chunks of one output together: added (a sum over rows) or concatenated on ``axis``."""
    if len(pieces) == 1:
        return pieces[0]
    if summed:
        return sum(pieces[1:], pieces[0])
    return np.concatenate(pieces, axis=axis)
