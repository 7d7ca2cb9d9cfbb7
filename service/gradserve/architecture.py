"""The small networks ``build`` tries, and the rule that picks one.

Parsimony is the point: fewer weights mean faster derivatives and less to overfit. Every
candidate is trained on the same split from the same seed; among those whose validation error is
within ``tolerance`` (relative) of the best one, the one with the fewest weights wins.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

__all__ = ["Candidate", "default_architectures", "check_architectures", "n_weights", "choose"]

# Hidden widths of the default search; depth 2 only at widths where it can pay for its weights.
_REGRESSION = [(2,), (4,), (8,), (16,), (32,), (4, 4), (8, 8), (16, 16)]


@dataclass(frozen=True)
class Candidate:
    """One trained candidate: its hidden widths, size and validation error."""

    hidden: tuple[int, ...]
    n_weights: int
    validation_error: float
    epochs: int
    seconds: float


def n_weights(m: int, hidden: Sequence[int], k: int) -> int:
    """p of the chain m -> hidden... -> k: Σ (fan_in + 1) · units."""
    sizes = [m, *hidden, k]
    return sum((a + 1) * b for a, b in zip(sizes[:-1], sizes[1:]))


def default_architectures(kind: str, m: int, k: int) -> list[tuple[int, ...]]:
    """Candidates in order of size (fewest weights first).

    compression: (h, c, h) for code sizes c from 1 to min(m - 1, 6), h = clip(2 m, 8, 32); the
    middle layer is the code.
    """
    if kind == "compression":
        h = min(32, max(8, 2 * m))
        shapes = [(h, c, h) for c in range(1, max(2, min(m - 1, 6) + 1))]
    else:
        shapes = list(_REGRESSION)
    return sorted(shapes, key=lambda hid: (n_weights(m, hid, k), hid))


def check_architectures(shapes: Sequence[Sequence[int]], kind: str) -> list[tuple[int, ...]]:
    out = []
    for shape in shapes:
        hidden = tuple(int(u) for u in shape)
        if not hidden or min(hidden) < 1:
            raise ValueError(f"an architecture is a non-empty list of positive widths; got {shape}")
        if kind == "compression" and len(hidden) % 2 == 0:
            raise ValueError(f"a compression architecture has an odd number of hidden layers, the "
                             f"middle one being the code; got {hidden}")
        out.append(hidden)
    if not out:
        raise ValueError("no architecture to try")
    return out


def choose(candidates: Sequence[Candidate], tolerance: float) -> Candidate:
    """The smallest candidate whose validation error is at most (1 + tolerance) × the best.

    Ties in size go to the lower error. Non-finite errors (a diverged fit) never win.
    """
    finite = [c for c in candidates if c.validation_error == c.validation_error
              and c.validation_error != float("inf")]
    if not finite:
        raise ValueError("every candidate diverged (non-finite validation error)")
    best = min(c.validation_error for c in finite)
    good = [c for c in finite if c.validation_error <= (1.0 + tolerance) * best]
    return min(good, key=lambda c: (c.n_weights, c.validation_error))
