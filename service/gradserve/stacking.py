"""Many prepared calls of one method in few compiled calls: kernels stacked over requests.

The engine's evaluate, jvp and vjp kernels exist here over a leading slot axis, one request and
its own w per slot (``kernels``), compiled by ``Model.warmup`` for a fixed set of (rows, slots)
shapes. ``run_many`` (behind ``Model.run_many``) splits a batch of calls of one method:

- a call with an entry that is not finite is not run: its InvalidInput takes its place, so it
  fails alone (entries are checked here, on the thread that runs the batch: see
  ``Model.prepare``). With ``finite_results``, so does a call whose result holds one. Stacked
  calls are checked as their stacked arrays, once per array (pad slots and rows are tame), and
  only a group where that finds something is looked at call by call. Checked call by call,
  they took a quarter of the compute threads' time under 64 clients, each check letting go of
  the interpreter lock that the event loop wants (BENCHMARKS.md);
- a call that cannot be stacked (several directions at once) or has more rows than the largest
  slot bucket runs alone: it fills the machine by itself;
- the others each get a slot. Calls are grouped by the bucket each would use alone, and a group
  is padded to a compiled slot count, so every shape is one compiled at warm-up.

Calls that share their weights (all omit w, or pass equal vectors) are stacked too, with their
one w repeated, rather than concatenated into one matrix product: concatenation changes the row
count of that product and with it the last bits of the results (measured: up to 3 ulps for
evaluate, more for the derivatives), while a slot runs exactly the shapes of an unbatched call.
Repeating w costs one (slots, p) copy per batch, a few microseconds per request.

Shapes: w (S, p), dw (S, p), x (S, n, m), dx (S, n, m), py (S, n, k) for S slots of n rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import jax
import numpy as np

from .arrays import all_finite, check_finite, finite_result
from .errors import InvalidInput

if TYPE_CHECKING:
    from .engine import Model

__all__ = ["Call", "STACKABLE", "arg_shapes", "kernels", "run_many"]

# Kernels a request may run alone that also exist stacked (jvp_w as jvp with dx = 0).
STACKABLE = frozenset({"evaluate", "jvp", "jvp_w", "vjp"})
_KERNEL_OF = {"evaluate": "evaluate_stack", "forward_derivative": "jvp_stack",
              "gradient": "vjp_stack"}
# The names callers give the arrays that a call holds in their many-direction form.
_GIVEN_NAMES = {"dW": "dw", "dX": "dx", "PY": "py"}


@dataclass(frozen=True, slots=True)
class Call:
    """One request, its arguments' shapes checked (``Model.prepare``; its entries are checked
    when it runs: ``check_finite``), in the model's dtype, ready to run alone or with others.

    method: "evaluate", "forward_derivative" or "gradient"; kernel: what runs it alone;
    arrays: its per-call and per-row arrays, named as in ``derivatives.ARGS`` (x (n, m), dw (p,),
    dx (n, m), py (n, k), or the many-direction dW, dX, PY); w (p,), None for the stored weights
    when it runs.
    """

    method: str
    kernel: str
    arrays: dict
    w: np.ndarray | None = None

    @property
    def rows(self) -> int:
        return self.arrays["x"].shape[0]

    @property
    def stackable(self) -> bool:
        return self.kernel in STACKABLE

    def check_finite(self) -> None:
        """InvalidInput naming the first argument (w, x, then the others) with an entry that is
        not finite, and where."""
        if self.w is not None:
            check_finite("w", self.w)
        for name, arr in self.arrays.items():
            check_finite(_GIVEN_NAMES.get(name, name), arr)


def kernels(base: dict[str, Callable], vectorize: bool) -> dict[str, Callable]:
    """evaluate_stack, jvp_stack and vjp_stack from the engine's evaluate, jvp and vjp.

    ``vectorize``: ``jax.vmap``, one wide kernel for every slot: what an accelerator is for.
    Otherwise (CPU) ``lax.map``: the slots one after another inside one compiled call. Each slot
    then runs exactly the operations of an unbatched call, so results are bitwise the same, and on
    a CPU that costs nothing (measured: as fast as vmap at 16 and 64 slots, and both 5 to 10 times
    faster per request than one call per request).
    """
    def stacked(fn: Callable) -> Callable:
        if vectorize:
            return jax.vmap(fn)
        return lambda *args: jax.lax.map(lambda slot: fn(*slot), args)

    return {f"{name}_stack": stacked(base[name]) for name in ("evaluate", "jvp", "vjp")}


def arg_shapes(kernel: str, slots: int, n: int, m: int, k: int, p: int) -> list[tuple[int, ...]]:
    """The argument shapes of a stacked kernel for ``slots`` slots of n rows."""
    return {"evaluate_stack": [(slots, p), (slots, n, m)],
            "jvp_stack": [(slots, p), (slots, p), (slots, n, m), (slots, n, m)],
            "vjp_stack": [(slots, p), (slots, n, m), (slots, n, k)]}[kernel]


def run_many(model: "Model", calls: list[Call], finite_results: bool = False) -> list:
    """Results of ``calls`` (all of one method), in order; a call with an entry that is not
    finite (with ``finite_results``, also in its result) gets its InvalidInput instead. See the
    module docstring."""
    results: list = [None] * len(calls)
    largest = model.slot_buckets[-1] if model.slot_buckets else 0
    by_bucket: dict[int, list[int]] = {}
    for i, call in enumerate(calls):
        if call.stackable and call.rows <= largest and len(calls) > 1:
            by_bucket.setdefault(model.bucket_for(call.rows), []).append(i)
        else:
            results[i] = _alone(model, call, finite_results)
    stored = model._state[0]  # one read: one version of the stored weights for the whole batch
    most = model.slots[-1] if model.slots else 1
    for rows, members in by_bucket.items():
        for start in range(0, len(members), most):
            part = members[start:start + most]
            group = _group(model, [calls[i] for i in part], rows, stored, finite_results)
            for i, out in zip(part, group):
                results[i] = out
    return results


def _refusal(call: Call) -> InvalidInput | None:
    """The InvalidInput that refuses ``call`` for an entry that is not finite; None if none."""
    try:
        call.check_finite()
    except InvalidInput as exc:
        return exc
    return None


def _alone(model: "Model", call: Call, finite_results: bool):
    """``call`` run by itself, its entries checked first."""
    refused = _refusal(call)
    if refused is not None:
        return refused
    out = model._run_call(call)
    return finite_result(call.method, out) if finite_results else out


def _group(model: "Model", calls: list[Call], rows: int, stored: np.ndarray,
           finite_results: bool, checked: bool = False) -> list:
    """The results of calls of one row bucket, one slot each in one compiled call (a single
    call runs alone: a slot kernel would only add padding). ``checked``: their entries are
    known to be finite."""
    if len(calls) == 1:
        return [_alone(model, calls[0], finite_results)]
    ran = _stacked(model, calls, rows, stored, checked, finite_results)
    if ran is None:  # an entry is not finite: whose? The others run without them.
        refused = {j: exc for j, call in enumerate(calls) if (exc := _refusal(call)) is not None}
        good = [call for j, call in enumerate(calls) if j not in refused]
        rest = iter(_group(model, good, rows, stored, finite_results, checked=True)
                    if good else ())
        return [refused[j] if j in refused else next(rest) for j in range(len(calls))]
    results, finite = ran
    if not finite:  # some result holds an entry that is not finite: whose?
        results = [finite_result(call.method, out) for call, out in zip(calls, results)]
    return results


def _stacked(model: "Model", calls: list[Call], rows: int, stored: np.ndarray, checked: bool,
             finite_results: bool) -> tuple[list, bool] | None:
    """One compiled call with one slot per call, each padded to ``rows`` rows: (the results,
    False if ``finite_results`` and an output holds an entry that is not finite); None, and
    nothing run, if an argument holds one (unless ``checked``)."""
    slots = model.slots_for(len(calls))
    method = calls[0].method
    # Pad slots get real weights and tame inputs (see ``_stack``): their outputs are dropped,
    # but a vmapped kernel computes them, and garbage could raise floating-point traps.
    w = _weights(model, [stored if c.w is None else c.w for c in calls], slots)
    x = _stack(model, [c.arrays["x"] for c in calls], slots, rows, model._pad_row)
    if method == "evaluate":
        args = (w, x)
    elif method == "forward_derivative":
        zeros = np.zeros(model.n_inputs, model.dtype)
        dw = _weights(model, [c.arrays["dw"] for c in calls], slots,
                      pad=np.zeros(model.n_weights, model.dtype))
        # dx absent (inputs held fixed) is dx = 0: both kinds of request share one kernel.
        dx = _stack(model, [c.arrays.get("dx") for c in calls], slots, rows, zeros)
        args = (w, dw, x, dx)
    else:
        py = _stack(model, [c.arrays["py"] for c in calls], slots, rows,
                    np.zeros(model.n_outputs, model.dtype))
        args = (w, x, py)
    # The stored weights were checked when they were stored: w needs a look only if a call
    # brought its own (the others' slots hold copies of the stored vector).
    if not checked and not all_finite(args if any(c.w is not None for c in calls) else args[1:]):
        return None
    run = model._executable(_KERNEL_OF[method], rows, slots)
    outs = [np.asarray(out) for out in jax.tree.leaves(run(*args))]
    finite = not finite_results or all_finite(outs)
    if method != "gradient":
        return [outs[0][s, :c.rows] for s, c in enumerate(calls)], finite
    pw, px = outs
    return [(pw[s].reshape(-1, 1), px[s, :c.rows]) for s, c in enumerate(calls)], finite


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
    """(slots, rows, cols): array s at the top of slot s; every other row is ``fill``, as
    ``padding.pad_rows`` pads (the input shift for x, zeros for tangents and cotangents). None:
    all fill."""
    out = np.empty((slots, rows, fill.shape[0]), model.dtype)
    out[...] = fill
    for s, a in enumerate(arrays):
        if a is not None:
            out[s, :a.shape[0]] = a
    return out
