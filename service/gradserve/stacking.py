"""Many validated calls of one method, run in as few compiled calls as the compiled shapes allow.

A helper of ``Model.run_many``, kept apart so the engine module stays about one model.

- A call with more rows than the largest slot bucket runs alone: it fills the machine by itself.
- The others each get a slot of a stacked kernel (``Model``'s ``*_stack`` kernels: one request
  and its own w per slot). Calls are grouped by the bucket each would use alone, and a group is
  padded to a compiled slot count, so every shape is one compiled at warm-up.

Calls that share their weights (all omit w, or all pass equal vectors) are stacked too, with
their one w repeated, rather than concatenated into one matrix product: concatenation changes the
row count of that product and with it the last bits of the results (measured: up to 3 ulps for
evaluate and more for the derivatives), while a slot runs exactly the shapes of an unbatched call.
Repeating w costs one (slots, p) copy per batch, a few microseconds per request.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .engine import Call, Model

__all__ = ["run_many"]


def run_many(model: "Model", calls: list["Call"]) -> list:
    """Results of ``calls`` (all of one method), in order; see the module docstring."""
    results: list = [None] * len(calls)
    largest = model.slot_buckets[-1] if model.slot_buckets else 0
    by_bucket: dict[int, list[int]] = {}
    for i, call in enumerate(calls):
        if call.rows <= largest and len(calls) > 1:
            by_bucket.setdefault(model.bucket_for(call.rows), []).append(i)
        else:
            results[i] = model.run(call)
    stored = model._state[0]  # one read: one version of the stored weights for the whole batch
    most = model.slots[-1] if model.slots else 1
    for rows, members in by_bucket.items():
        for start in range(0, len(members), most):
            part = members[start:start + most]
            if len(part) == 1:  # a slot kernel would only add padding
                results[part[0]] = model.run(calls[part[0]])
                continue
            for i, out in zip(part, _stacked(model, [calls[i] for i in part], rows, stored)):
                results[i] = out
    return results


def _stacked(model: "Model", calls: list["Call"], rows: int, stored: np.ndarray) -> list:
    """One compiled call with one slot per call, each padded to ``rows`` rows."""
    slots = model.slots_for(len(calls))
    method = calls[0].method
    # Pad slots get real weights and tame inputs (see ``_stack``): their outputs are dropped,
    # but a vmapped kernel computes them, and garbage could raise floating-point traps.
    w = _weights(model, [stored if c.w is None else c.w for c in calls], slots)
    x = _stack(model, [c.x for c in calls], slots, rows, model._pad_row)
    if method == "evaluate":
        y = np.asarray(model._executable("evaluate_stack", (slots, rows))(w, x))
        return [y[s, :c.rows] for s, c in enumerate(calls)]
    if method == "forward_derivative":
        zeros = np.zeros(model.n_inputs, model.dtype)
        dw = _weights(model, [c.dw for c in calls], slots, pad=np.zeros(model.n_weights, model.dtype))
        # dx None (inputs held fixed) is dx = 0: both kinds of request share one kernel.
        dx = _stack(model, [c.dx for c in calls], slots, rows, zeros)
        dy = np.asarray(model._executable("jvp_stack", (slots, rows))(w, dw, x, dx))
        return [dy[s, :c.rows] for s, c in enumerate(calls)]
    py = _stack(model, [c.py for c in calls], slots, rows, np.zeros(model.n_outputs, model.dtype))
    pw, px = model._executable("vjp_stack", (slots, rows))(w, x, py)
    pw, px = np.asarray(pw), np.asarray(px)
    return [(pw[s].reshape(-1, 1), px[s, :c.rows]) for s, c in enumerate(calls)]


def _weights(model: "Model", vectors: list[np.ndarray], slots: int,
             pad: np.ndarray | None = None) -> np.ndarray:
    """(slots, p): vector s in slot s; pad slots repeat the first vector (or hold ``pad``)."""
    out = np.empty((slots, model.n_weights), model.dtype)
    for s, v in enumerate(vectors):
        out[s] = v
    out[len(vectors):] = vectors[0] if pad is None else pad
    return out


def _stack(model: "Model", arrays: list[np.ndarray | None], slots: int, rows: int,
           fill: np.ndarray) -> np.ndarray:
    """(slots, rows, cols): array s at the top of slot s; every other row is ``fill``, as in
    ``Model._pad`` (the input shift for x, zeros for tangents and cotangents). None: all fill."""
    out = np.empty((slots, rows, fill.shape[0]), model.dtype)
    out[...] = fill
    for s, a in enumerate(arrays):
        if a is not None:
            out[s, :a.shape[0]] = a
    return out
