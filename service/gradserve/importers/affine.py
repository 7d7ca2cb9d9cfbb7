"""Affine values of a graph being translated: ``concat(nodes) @ kernel + bias``.

The ONNX importer interprets a graph symbolically: between two activations, every operator a
tabular MLP exports (products by constant matrices, additions, scalings, concatenations) is an
affine map, so it only composes a kernel and a bias. An activation then turns the affine value
into one dense layer of the spec, whose inputs are the value's parts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..errors import UnsupportedModel

__all__ = ["Affine", "Above", "combine"]


@dataclass(frozen=True)
class Affine:
    """A value ``concat(parts) @ kernel + bias``: parts are (node, units) of the spec's graph,
    kernel (Σ units, k), bias (k,). ``plain`` when it is exactly one node's output."""

    parts: tuple[tuple[str, int], ...]
    kernel: np.ndarray
    bias: np.ndarray
    plain: bool = False

    @property
    def units(self) -> int:
        return self.kernel.shape[1]

    def rows(self) -> dict[str, np.ndarray]:
        out, start = {}, 0
        for node, units in self.parts:
            out[node] = self.kernel[start:start + units]
            start += units
        return out

    def then(self, matrix: np.ndarray, bias: np.ndarray | float = 0.0) -> "Affine":
        """This value @ matrix + bias."""
        return Affine(self.parts, self.kernel @ matrix, self.bias @ matrix + bias)

    def scaled(self, factor: np.ndarray) -> "Affine":
        return Affine(self.parts, self.kernel * factor, self.bias * factor)

    @staticmethod
    def node(name: str, units: int) -> "Affine":
        return Affine(((name, units),), np.eye(units), np.zeros(units), plain=True)


@dataclass(frozen=True)
class Above:
    """The mask ``value > threshold``: only meaningful as the condition of a Softplus idiom."""

    value: Affine
    threshold: float


def combine(values: Sequence[Affine], stack: bool) -> Affine:
    """Sum (stack=False, same width) or feature-wise concatenation (stack=True) of values,
    over the union of their parts (a node read by two values gets one block of rows)."""
    parts: dict[str, int] = {}
    for v in values:
        for node, units in v.parts:
            parts.setdefault(node, units)
    width = sum(v.units for v in values) if stack else values[0].units
    if not stack and any(v.units != width for v in values):
        raise UnsupportedModel(f"adding values of {[v.units for v in values]} features: "
                               "broadcasting between computed values is not supported")
    rows = {node: np.zeros((units, width)) for node, units in parts.items()}
    bias, col = np.zeros(width), 0
    for v in values:
        cols = slice(col, col + v.units) if stack else slice(0, width)
        for node, block in v.rows().items():
            rows[node][:, cols] += block
        bias[cols] += v.bias
        col += v.units if stack else 0
    return Affine(tuple(parts.items()), np.vstack([rows[n] for n in parts]), bias)
