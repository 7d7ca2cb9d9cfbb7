"""The in-process model: NeurEco Tabular's four gradient methods, plus evaluate, in JAX.

Compiled functions of (w, x) are built for a fixed set of batch sizes (buckets). A batch is padded
up to the nearest bucket, and one larger than the biggest bucket is cut into chunks, so no request
shape ever causes a new trace once a bucket has been compiled (``warmup`` compiles them all).

For a service that merges concurrent requests, the same kernels also exist vmapped over a leading
slot axis (one request per slot), compiled for a fixed set of (slots, rows) shapes: ``run_many``
runs a list of validated calls through them (see ``gradserve.stacking``).
"""

from __future__ import annotations

import enum
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

import jax
import numpy as np

from . import stacking
from .arrays import as_matrix, as_vector, check_finite, check_rows
from .errors import InvalidInput
from .network import build_forward
from .spec import ModelSpec

jax.config.update("jax_enable_x64", True)  # float64 models need it; float32 ones are unaffected

__all__ = ["Model", "Call", "SetWeightsStatus", "DEFAULT_BUCKETS"]

DEFAULT_BUCKETS = (1, 8, 64, 512, 4096)


class SetWeightsStatus(enum.IntEnum):
    """What ``set_weights`` returns: 0 when the weights were stored, non-zero otherwise."""

    OK = 0
    WRONG_SHAPE = 1
    NOT_FINITE = 2
    NOT_NUMERIC = 3


def _kernels(forward: Callable) -> dict[str, Callable]:
    """The compiled methods, each a pure function of arrays only.

    Signature order is (w, per-call arrays, per-row arrays): the per-row ones are padded.
    """

    def evaluate(w, x):
        return forward(w, x)

    def jvp(w, dw, x, dx):
        return jax.jvp(forward, (w, x), (dw, dx))[1]

    def jvp_w(w, dw, x):
        # dx=None: inputs held fixed. A separate kernel, so no zero tangent is computed through.
        return jax.jvp(lambda ww: forward(ww, x), (w,), (dw,))[1]

    def vjp(w, x, py):
        return jax.vjp(forward, w, x)[1](py)

    return {"evaluate": evaluate, "jvp": jvp, "jvp_w": jvp_w, "vjp": vjp}


def _stacked_kernels(kernels: dict[str, Callable], vectorize: bool) -> dict[str, Callable]:
    """The same methods over a leading slot axis, one request (and its own w) per slot.

    ``vectorize``: ``jax.vmap``, one wide kernel for every slot: what an accelerator is for.
    Otherwise (CPU) ``lax.map``: the slots one after another inside one compiled call. Each slot
    then runs exactly the operations of an unbatched call, so results are bitwise the same, and on
    a CPU that costs nothing (measured: as fast as vmap at 16 and 64 slots, and both 5 to 10 times
    faster per request than one call per request). ``jvp_w`` has no stacked form: a request
    without dx runs ``jvp`` with dx = 0, so both kinds of forward_derivative share a batch.
    """
    def stacked(fn: Callable) -> Callable:
        if vectorize:
            return jax.vmap(fn)
        return lambda *args: jax.lax.map(lambda slot: fn(*slot), args)

    return {f"{name}_stack": stacked(kernels[name]) for name in ("evaluate", "jvp", "vjp")}


@dataclass(frozen=True, slots=True)
class Call:
    """One validated request, in the model's dtype, ready to run alone or with others.

    method: "evaluate", "forward_derivative" or "gradient". Shapes: w, dw (p,) (w None: the
    stored weights when it runs); x, dx (n, m) (dx None: inputs held fixed); py (n, k).
    """

    method: str
    x: np.ndarray
    w: np.ndarray | None = None
    dw: np.ndarray | None = None
    dx: np.ndarray | None = None
    py: np.ndarray | None = None

    @property
    def rows(self) -> int:
        return self.x.shape[0]


class Model:
    """A tabular model y = F(x, w) with its stored weights.

    Shapes: x, dx (n, m) raw inputs; w, dw (p, 1) (``(p,)`` also accepted); y, dy, py (n, k).
    Arrays are returned in the model's dtype (float64 unless the spec says float32).
    """

    def __init__(self, spec: ModelSpec, weights: np.ndarray, *, name: str = "model",
                 version: int = 0, buckets: tuple[int, ...] = DEFAULT_BUCKETS,
                 slots: tuple[int, ...] = (), slot_rows: int = 0, vectorize: bool | None = None):
        """``slots``, ``slot_rows``: the stacked kernels ``run_many`` uses are compiled for these
        slot counts and for every bucket of at most ``slot_rows`` rows (none by default).
        ``vectorize``: stack slots with ``jax.vmap`` (default: unless JAX runs on the CPU)."""
        if not buckets or min(buckets) < 1:
            raise ValueError(f"buckets must be positive batch sizes, got {buckets}")
        if slots and min(slots) < 1:
            raise ValueError(f"slots must be positive counts, got {slots}")
        self.spec = spec
        self.name = name
        self.dtype = np.dtype(spec.dtype)
        self.buckets = tuple(sorted(set(int(b) for b in buckets)))
        self.slots = tuple(sorted(set(int(s) for s in slots)))
        # A slot holds one request padded to its own bucket: the per-slot shapes are those of an
        # unbatched call, so each slot computes what that request would compute alone.
        self.slot_buckets = tuple(b for b in self.buckets if b <= slot_rows) if self.slots else ()
        self.trace_count = 0  # grows only when JAX traces a kernel: tests use it to prove no retrace
        self._n_weights = spec.n_weights  # derived from the layer graph: once, not per request
        w = as_vector("weights", weights, spec.n_weights, self.dtype)
        self._state = self._make_state(w, version)
        self._forward = build_forward(spec)
        self._pad_row = np.array([f.shift for f in spec.inputs], dtype=self.dtype)
        kernels = _kernels(self._forward)
        if vectorize is None:
            vectorize = jax.default_backend() != "cpu"
        kernels.update(_stacked_kernels(kernels, vectorize))
        self._jitted = {k: jax.jit(self._counted(f)) for k, f in kernels.items()}
        self._compiled: dict[tuple[str, int | tuple[int, int]], Callable] = {}
        self._lock = threading.Lock()

    # --- sizes -----------------------------------------------------------------------------

    @property
    def version(self) -> int:
        """The repository version the stored weights came from (0 if never stored)."""
        return self._state[2]

    def snapshot(self) -> tuple[np.ndarray, int]:
        """(stored weights (p,), read-only, version), consistent with each other."""
        return self._state[0], self._state[2]

    def replace_weights(self, w: np.ndarray, version: int) -> None:
        """Serve ``w`` (already checked, (p,)) as ``version``, in one step."""
        self._state = self._make_state(w, version)

    @property
    def n_inputs(self) -> int:
        return self.spec.n_inputs

    @property
    def n_outputs(self) -> int:
        return self.spec.n_outputs

    @property
    def n_weights(self) -> int:
        return self._n_weights

    @property
    def forward_function(self) -> Callable:
        """The pure JAX function F(w (p,), x (n, m)) -> y (n, k), for composing with other JAX code."""
        return self._forward

    # --- the four documented methods, and evaluate --------------------------------------------

    def get_weights(self) -> np.ndarray:
        """The stored weights, a new (p, 1) array."""
        return self._state[0].reshape(-1, 1).copy()

    def set_weights(self, w: np.ndarray) -> int:
        """Replace the stored weights with ``w`` (p, 1) or (p,).

        Returns 0 (``SetWeightsStatus.OK``) when stored; a non-zero ``SetWeightsStatus`` when
        ``w`` has the wrong size, a non-finite entry or is not numeric, and then the previous
        weights are kept. The update is all or nothing: a concurrent call sees old or new weights.
        """
        try:
            self._state = self._make_state(self.check_weights(w), self.version)
        except InvalidInput as exc:
            return exc.status
        return SetWeightsStatus.OK

    def check_weights(self, w: np.ndarray, name: str = "weights") -> np.ndarray:
        """``w`` as a (p,) array of the model's dtype, or InvalidInput carrying the
        ``SetWeightsStatus`` that ``set_weights`` would return."""
        try:
            arr = np.asarray(w)
        except (ValueError, TypeError):
            arr = np.array([], dtype=object)
        if arr.dtype.kind not in "fiu":
            raise InvalidInput(f"{name} must be an array of real numbers, got dtype {arr.dtype}",
                               SetWeightsStatus.NOT_NUMERIC)
        p = self.n_weights
        if arr.shape not in ((p, 1), (p,)):
            raise InvalidInput(f"{name} must have shape ({p}, 1) or ({p},); got shape {arr.shape}",
                               SetWeightsStatus.WRONG_SHAPE)
        try:
            return check_finite(name, arr.reshape(p).astype(self.dtype))
        except InvalidInput as exc:
            raise InvalidInput(exc.message, SetWeightsStatus.NOT_FINITE) from None

    def evaluate(self, x: np.ndarray, w: np.ndarray | None = None) -> np.ndarray:
        """y (n, k) at inputs x (n, m), with weights ``w`` (p, 1) if given, else the stored ones.

        A given ``w`` is only the evaluation point: the stored weights do not change.
        """
        return self.run(self.prepare("evaluate", x, w=w))

    def forward_derivative(self, w: np.ndarray | None, dw: np.ndarray, x: np.ndarray,
                           dx: np.ndarray | None = None) -> np.ndarray:
        """Forward mode: dy = ∂y/∂w·dw + ∂y/∂x·dx at (w, x), shape (n, k).

        w, dw: (p, 1) or (p,); x, dx: (n, m). ``dx=None`` holds the inputs fixed. ``w`` is the
        evaluation point only (None: the stored weights); the stored weights do not change.
        """
        return self.run(self.prepare("forward_derivative", x, w=w, dw=dw, dx=dx))

    def gradient(self, w: np.ndarray | None, x: np.ndarray,
                 py: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Reverse mode: (pw, px) = (pyᵀ·∂y/∂w, pyᵀ·∂y/∂x), shapes (p, 1) and (n, m).

        py: (n, k), the output perturbation. ``w`` is the evaluation point only (None: the stored
        weights); the stored weights do not change.
        """
        return self.run(self.prepare("gradient", x, w=w, py=py))

    # --- validated calls, run alone or many at once ---------------------------------------------

    def prepare(self, method: str, x, *, w=None, dw=None, dx=None, py=None) -> Call:
        """Check every argument of ``method`` once (InvalidInput naming the array, the expected
        and the received shape) and return the call, ready for ``run`` or ``run_many``."""
        w = None if w is None else as_vector("w", w, self.n_weights, self.dtype)
        x = as_matrix("x", x, self.n_inputs, self.dtype, "one row per sample, one column per input")
        if method == "evaluate":
            return Call(method, x, w)
        if method == "forward_derivative":
            dw = as_vector("dw", dw, self.n_weights, self.dtype)
            if dx is not None:
                dx = as_matrix("dx", dx, self.n_inputs, self.dtype, "the same shape as x")
                check_rows("dx", dx, x.shape[0])
            return Call(method, x, w, dw=dw, dx=dx)
        if method == "gradient":
            py = as_matrix("py", py, self.n_outputs, self.dtype,
                           "one row per row of x, one column per output")
            check_rows("py", py, x.shape[0])
            return Call(method, x, w, py=py)
        raise ValueError(f"unknown method {method!r}")

    def run(self, call: Call):
        """The result of one call, computed alone: y or dy (n, k), or (pw (p, 1), px (n, m))."""
        w = self._state[1] if call.w is None else call.w
        if call.method == "evaluate":
            return self._rows("evaluate", w, [call.x], [])[0]
        if call.method == "forward_derivative":
            if call.dx is None:
                return self._rows("jvp_w", w, [call.x], [call.dw])[0]
            return self._rows("jvp", w, [call.x, call.dx], [call.dw])[0]
        pws, px = self._rows("vjp", w, [call.x, call.py], [], summed=0)
        return pws.reshape(-1, 1), px

    def run_many(self, calls: list[Call]) -> list:
        """The results of calls of one method, in order, computed in as few compiled calls as the
        compiled shapes allow (see ``gradserve.stacking``). Each equals ``run(call)`` bitwise on
        a CPU; with ``vectorize`` (accelerators) to a few ulps, as XLA may order sums differently
        in a vmapped kernel."""
        return stacking.run_many(self, calls)

    # --- compilation --------------------------------------------------------------------------

    def warmup(self, threads: int | None = None) -> "Model":
        """Compile every kernel for every bucket now, and every stacked kernel for every
        (slots, rows) shape, so no request ever waits for a compile.

        XLA compiles without holding the GIL, so ``threads`` (default: one per core) compile
        side by side."""
        todo = [(kernel, shape) for kernel in self._jitted for shape in self._shapes(kernel)
                if (kernel, shape) not in self._compiled]
        with ThreadPoolExecutor(threads or os.cpu_count() or 1) as pool:
            list(pool.map(lambda job: self._executable(*job), todo))
        return self

    def bucket_for(self, n: int) -> int:
        """The smallest bucket that holds n rows (n at most the largest bucket)."""
        for bucket in self.buckets:
            if bucket >= n:
                return bucket
        return self.buckets[-1]

    def slots_for(self, count: int) -> int:
        """The smallest compiled slot count that holds ``count`` requests (at most the largest)."""
        for slots in self.slots:
            if slots >= count:
                return slots
        return self.slots[-1]

    def _shapes(self, kernel: str) -> list[int | tuple[int, int]]:
        if kernel.endswith("_stack"):
            return [(s, r) for s in self.slots for r in self.slot_buckets]
        return list(self.buckets)

    def _executable(self, kernel: str, shape: int | tuple[int, int]) -> Callable:
        key = (kernel, shape)
        fn = self._compiled.get(key)
        if fn is None:
            # Compiled outside any lock, so warm-up threads compile in parallel; after warm-up
            # every key is present and this is one dict lookup.
            fn = self._jitted[kernel].lower(*self._arg_shapes(kernel, shape)).compile()
            fn = self._compiled.setdefault(key, fn)
        return fn

    def _arg_shapes(self, kernel: str, shape: int | tuple[int, int]) -> list[jax.ShapeDtypeStruct]:
        p, m, k = self.n_weights, self.n_inputs, self.n_outputs
        s = lambda *dims: jax.ShapeDtypeStruct(dims, self.dtype)  # noqa: E731
        if isinstance(shape, tuple):  # stacked: a leading slot axis, rows padded per slot
            S, n = shape
            return {
                "evaluate_stack": [s(S, p), s(S, n, m)],
                "jvp_stack": [s(S, p), s(S, p), s(S, n, m), s(S, n, m)],
                "vjp_stack": [s(S, p), s(S, n, m), s(S, n, k)],
            }[kernel]
        n = shape
        return {
            "evaluate": [s(p), s(n, m)],
            "jvp": [s(p), s(p), s(n, m), s(n, m)],
            "jvp_w": [s(p), s(p), s(n, m)],
            "vjp": [s(p), s(n, m), s(n, k)],
        }[kernel]

    def _counted(self, fn: Callable) -> Callable:
        def traced(*args):
            with self._lock:  # runs at trace time only; warm-up traces in several threads
                self.trace_count += 1
            return fn(*args)
        return traced

    # --- running ------------------------------------------------------------------------------

    def _make_state(self, w: np.ndarray, version: int) -> tuple[np.ndarray, jax.Array, int]:
        # One tuple, swapped by one assignment: readers never see weights of one version with
        # the number of another.
        w = np.array(w, dtype=self.dtype)
        w.flags.writeable = False
        return (w, jax.device_put(w), version)

    def _rows(self, kernel: str, w, row_args: list[np.ndarray], fixed: list[np.ndarray],
              summed: int | None = None) -> list[np.ndarray]:
        """Run ``kernel(w, *fixed, *row_args)`` over the rows, padded to buckets and chunked.

        Output ``summed`` (an index, or None) is a sum over rows (pw of a VJP): its chunks are
        added; every other output is per row and its chunks are concatenated.
        """
        n = row_args[0].shape[0]
        largest = self.buckets[-1]
        parts: list[list[np.ndarray]] = []
        for start in range(0, n, largest):
            rows = min(largest, n - start)
            bucket = self.bucket_for(rows)
            chunk = [self._pad(a[start:start + rows], bucket, i == 0) for i, a in enumerate(row_args)]
            out = self._executable(kernel, bucket)(w, *fixed, *chunk)
            outs = out if isinstance(out, tuple) else (out,)
            parts.append([np.asarray(o) if j == summed else np.asarray(o)[:rows]
                          for j, o in enumerate(outs)])
        result = []
        for j in range(len(parts[0])):
            pieces = [part[j] for part in parts]
            result.append(sum(pieces[1:], pieces[0]) if j == summed else
                          pieces[0] if len(pieces) == 1 else np.concatenate(pieces))
        return result

    def _pad(self, a: np.ndarray, bucket: int, is_x: bool) -> np.ndarray:
        if a.shape[0] == bucket:
            return a
        # x is padded with the input shift (normalised zero) so pad rows stay tame; tangents and
        # cotangents with zeros, so pad rows add nothing to pw.
        fill = self._pad_row if is_x else np.zeros(a.shape[1], self.dtype)
        return np.concatenate([a, np.broadcast_to(fill, (bucket - a.shape[0], a.shape[1]))])

    def __repr__(self) -> str:
        return (f"Model(name={self.name!r}, version={self.version}, kind={self.spec.kind!r}, "
                f"m={self.n_inputs}, k={self.n_outputs}, p={self.n_weights}, dtype={self.dtype})")

