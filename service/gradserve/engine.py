"""The in-process model: NeurEco Tabular's four gradient methods, plus evaluate, in JAX.

Compiled functions of (w, x) are built for a fixed set of batch sizes (buckets). A batch is padded
up to the nearest bucket, and one larger than the biggest bucket is cut into chunks, so no request
shape ever causes a new trace once a bucket has been compiled (``warmup`` compiles them all).
Calls with several directions at once are padded, likewise, to a fixed set of direction buckets.
The kernels beyond the four methods are in ``gradserve.derivatives``.

For a service that merges concurrent requests, ``prepare`` validates a call once and ``run_many``
runs many through kernels stacked over a leading slot axis (one request per slot), compiled for
a fixed set of (rows, slots) shapes; those kernels are in ``gradserve.stacking``.
"""

from __future__ import annotations

import enum
import math
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import jax
import numpy as np

from . import derivatives, padding, stacking
from .stacking import STACKABLE, Call
from .arrays import (as_matrix, as_stack, as_vector, check_finite, check_rows,
                     check_same_count, shape_of, stacked_count)
from .errors import InvalidInput
from .network import build_forward
from .spec import ModelSpec

jax.config.update("jax_enable_x64", True)  # float64 models need it; float32 ones are unaffected

__all__ = ["Model", "Call", "SetWeightsStatus", "DEFAULT_BUCKETS", "DEFAULT_DIRECTION_BUCKETS"]

DEFAULT_BUCKETS = (1, 8, 64, 512, 4096)
# Few direction buckets: every one multiplies the many-direction kernels compiled per row bucket.
DEFAULT_DIRECTION_BUCKETS = (8, 64)


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


class Model:
    """A tabular model y = F(x, w) with its stored weights.

    Shapes: x, dx (n, m) raw inputs; w, dw (p, 1) (``(p,)`` also accepted); y, dy, py (n, k);
    with r directions at once, dw (p, r), dx (n, m, r), py (n, k, r).
    Arrays are returned in the model's dtype (float64 unless the spec says float32).
    """

    def __init__(self, spec: ModelSpec, weights: np.ndarray, *, name: str = "model",
                 version: int = 0, buckets: tuple[int, ...] = DEFAULT_BUCKETS,
                 direction_buckets: tuple[int, ...] = DEFAULT_DIRECTION_BUCKETS,
                 slots: tuple[int, ...] = (), slot_rows: int = 0, vectorize: bool | None = None):
        """``slots``, ``slot_rows``: the stacked kernels ``run_many`` uses are compiled for these
        slot counts and for every bucket of at most ``slot_rows`` rows (none by default).
        ``vectorize``: stack slots with ``jax.vmap`` (default: unless JAX runs on the CPU)."""
        for what, sizes in (("buckets", buckets), ("direction_buckets", direction_buckets)):
            if not sizes or min(sizes) < 1:
                raise ValueError(f"{what} must be positive sizes, got {sizes}")
        if slots and min(slots) < 1:
            raise ValueError(f"slots must be positive counts, got {slots}")
        self.spec = spec
        self.name = name
        self.dtype = np.dtype(spec.dtype)
        self.buckets = tuple(sorted(set(int(b) for b in buckets)))
        self.direction_buckets = tuple(sorted(set(int(b) for b in direction_buckets)))
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
        base = _kernels(self._forward)
        if vectorize is None:
            vectorize = jax.default_backend() != "cpu"
        kernels = {**base, **derivatives.kernels(
            self._forward, spec.n_inputs, spec.n_outputs, spec.n_weights),
            **stacking.kernels(base, vectorize)}
        self._jitted = {k: jax.jit(self._counted(f)) for k, f in kernels.items()}
        self._compiled: dict[tuple[str, int, int | None], Callable] = {}
        self._seconds: dict[tuple[str, int], float] = {}  # see ``estimated_seconds``
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

    def forward_derivative(self, w: np.ndarray | None, dw: np.ndarray | None, x: np.ndarray,
                           dx: np.ndarray | None = None) -> np.ndarray:
        """Forward mode: dy = ∂y/∂w·dw + ∂y/∂x·dx at (w, x), shape (n, k).

        w, dw: (p, 1) or (p,); x, dx: (n, m). ``dx=None`` holds the inputs fixed, ``dw=None`` the
        weights (one of them is needed). ``w`` is the evaluation point only (None: the stored
        weights); the stored weights do not change.

        Several directions in one compiled call: dw (p, r) and/or dx (n, m, r) give dy (n, k, r),
        direction j being ``forward_derivative(w, dw[:, j], x, dx[..., j])``. A dw of shape
        (p, 1) with dx absent or (n, m) is the single-direction form above; for r = 1 in the
        stacked form, give dx (n, m, 1).
        """
        return self.run(self.prepare("forward_derivative", x, w=w, dw=dw, dx=dx))

    def gradient(self, w: np.ndarray | None, x: np.ndarray,
                 py: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Reverse mode: (pw, px) = (pyᵀ·∂y/∂w, pyᵀ·∂y/∂x), shapes (p, 1) and (n, m).

        py: (n, k), the output perturbation. ``w`` is the evaluation point only (None: the stored
        weights); the stored weights do not change.

        Several output perturbations in one compiled call: py (n, k, r) gives pw (p, 1, r) and
        px (n, m, r), entry j being ``gradient(w, x, py[..., j])``.
        """
        return self.run(self.prepare("gradient", x, w=w, py=py))

    # --- validated calls, run alone or many at once ---------------------------------------------

    def prepare(self, method: str, x, *, w=None, dw=None, dx=None, py=None) -> Call:
        """Check the arguments of ``method`` (evaluate, forward_derivative or gradient): present,
        numeric, shaped as the method needs (InvalidInput naming the array, the expected and the
        received shape); return the call, ready for ``run`` or ``run_many``.

        Their entries are checked finite when the call runs, on the thread that runs it:
        ``run_many`` checks its calls off a service's event loop, where a check of a (p,) array
        while compute threads wait for the interpreter lock costs several times its own time
        (``bench/lock_handover.py``)."""
        w = None if w is None else as_vector("w", w, self.n_weights, self.dtype, finite=False)
        x = self._x(x, finite=False)
        n, m, p = x.shape[0], self.n_inputs, self.n_weights
        if method == "evaluate":
            return Call(method, "evaluate", {"x": x}, w)
        if method == "forward_derivative":
            if dw is None and dx is None:
                raise InvalidInput("forward_derivative needs dw, dx or both (None holds that "
                                   "argument fixed)")
            r = stacked_count(shape_of(dw), 1, shape_of(dx), 2)
            if r is not None:
                stack = "several directions, one per column of dw / last-axis entry of dx"
                dws = (np.zeros((p, r), self.dtype) if dw is None
                       else as_stack("dw", dw, (p,), self.dtype, stack, finite=False))
                dxs = (np.zeros((n, m, r), self.dtype) if dx is None
                       else as_stack("dx", dx, (n, m), self.dtype, stack, finite=False))
                check_same_count("dw", dws, "dx", dxs)
                return Call(method, "jvp_many", {"x": x, "dW": dws, "dX": dxs}, w)
            dw = (np.zeros(p, self.dtype) if dw is None
                  else as_vector("dw", dw, p, self.dtype, finite=False))
            if dx is None:
                return Call(method, "jvp_w", {"x": x, "dw": dw}, w)
            dx = as_matrix("dx", dx, m, self.dtype, "the same shape as x", finite=False)
            check_rows("dx", dx, n)
            return Call(method, "jvp", {"x": x, "dw": dw, "dx": dx}, w)
        if method == "gradient":
            shape = shape_of(py)
            if shape is not None and len(shape) == 3:
                pys = as_stack("py", py, (n, self.n_outputs), self.dtype,
                               "one row per row of x, one column per output, one slice per direction",
                               finite=False)
                return Call(method, "vjp_many", {"x": x, "PY": pys}, w)
            py = as_matrix("py", py, self.n_outputs, self.dtype,
                           "one row per row of x, one column per output", finite=False)
            check_rows("py", py, n)
            return Call(method, "vjp", {"x": x, "py": py}, w)
        raise ValueError(f"unknown method {method!r}")

    def run(self, call: Call):
        """The result of one call, computed alone: y or dy (n, k) (dy (n, k, r) for r
        directions), or (pw (p, 1), px (n, m)) ((p, 1, r), (n, m, r) for r directions).
        InvalidInput if an entry of its arguments is not finite."""
        call.check_finite()
        return self._run_call(call)

    def run_many(self, calls: list[Call], finite_results: bool = False) -> list:
        """The results of calls of one method, in order, in as few compiled calls as the compiled
        shapes allow (see ``gradserve.stacking``). Each equals ``run(call)``: bitwise on a CPU;
        with ``vectorize`` (accelerators) to rounding, as a vmapped kernel may order sums
        differently. A call that ``run`` would refuse (an entry not finite) gets its InvalidInput
        in its place, not raised: it fails alone, and is not computed. ``finite_results``: so
        does a call whose result holds an entry that is not finite (``arrays.finite_result``),
        as the service answers."""
        return stacking.run_many(self, calls, finite_results)

    def _run_call(self, call: Call):
        """``run`` of a call whose entries are known to be finite."""
        w = self._state[1] if call.w is None else call.w
        if call.kernel == "vjp":
            pws, px = self._run("vjp", w, call.arrays, summed=0)
            return pws.reshape(-1, 1), px
        if call.kernel == "vjp_many":
            pws, pxs = self._run("vjp_many", w, call.arrays, summed=0)
            return pws[:, None, :], pxs
        return self._run(call.kernel, w, call.arrays)[0]

    # --- beyond the four methods --------------------------------------------------------------

    def hessian_vector(self, w: np.ndarray | None, x: np.ndarray, py: np.ndarray,
                       dw: np.ndarray | None = None,
                       dx: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Hessian-vector product of φ(w, x) = <py, F(w, x)>: (hw (p, 1), hx (n, m)) =
        ∇²φ · (dw, dx), i.e. the derivative of ``gradient(w, x, py)`` in the direction (dw, dx).

        py (n, k); dw (p, 1) or (p,), dx (n, m); a None direction is zero (one is needed). For
        Newton-type steps and Laplace approximations. ``w`` as in ``gradient``.
        """
        w_dev, x = self._weights_arg(w), self._x(x)
        if dw is None and dx is None:
            raise InvalidInput("hessian_vector needs dw, dx or both (None is a zero direction)")
        n, m, p = x.shape[0], self.n_inputs, self.n_weights
        py = as_matrix("py", py, self.n_outputs, self.dtype, "one row per row of x, one column per output")
        check_rows("py", py, n)
        dw = np.zeros(p, self.dtype) if dw is None else as_vector("dw", dw, p, self.dtype)
        if dx is None:
            dx = np.zeros((n, m), self.dtype)
        else:
            dx = as_matrix("dx", dx, m, self.dtype, "the same shape as x")
            check_rows("dx", dx, n)
        hw, hx = self._run("hvp", w_dev, {"dw": dw, "x": x, "py": py, "dx": dx}, summed=0)
        return hw.reshape(-1, 1), hx

    def jacobian(self, w: np.ndarray | None, x: np.ndarray, wrt: str = "x") -> np.ndarray:
        """The full Jacobian of each row: ∂y_i/∂x_i (n, k, m) for ``wrt="x"``, ∂y_i/∂w (n, k, p)
        for ``wrt="w"``. Forward or reverse mode, whichever needs fewer passes for the model's
        sizes (``derivatives.jacobian_modes``). ``w`` as in ``gradient``.
        """
        if wrt not in ("x", "w"):
            raise InvalidInput(f"wrt must be 'x' or 'w', got {wrt!r}")
        w_dev, x = self._weights_arg(w), self._x(x)
        return self._run(f"jacobian_{wrt}", w_dev, {"x": x})[0]

    def jacobian_size(self, n: int, wrt: str) -> int:
        """Entries of the answer of ``jacobian`` for n rows (to refuse one too large to send)."""
        return n * self.n_outputs * (self.n_weights if wrt == "w" else self.n_inputs)

    # --- compilation --------------------------------------------------------------------------

    def warmup(self, threads: int | None = None) -> "Model":
        """Compile every kernel for every shape it serves now (``compiled_shapes``), so no
        request ever waits for a compile. XLA compiles without holding the GIL, so ``threads``
        (default: one per core) compile side by side."""
        todo = [shape for shape in self.compiled_shapes() if shape not in self._compiled]
        with ThreadPoolExecutor(threads or os.cpu_count() or 1) as pool:
            list(pool.map(lambda shape: self._executable(*shape), todo))
        self._time_kernels()
        return self

    def estimated_seconds(self, call: Call) -> float:
        """How long ``run(call)`` takes, from the kernels timed at warm-up (or a faster call of
        the same kernel since); infinite for a call whose kernel was not timed (several
        directions) or before warm-up."""
        seconds = self._seconds.get((call.kernel, self.bucket_for(call.rows)))
        if seconds is None:
            return math.inf
        return seconds * -(-call.rows // self.buckets[-1])  # chunks of the largest bucket

    def _time_kernels(self) -> None:
        """Time one call of each single-request kernel per row bucket (the fastest of three, on
        zeros, numpy in and out), so a service can tell which calls are short enough to run
        without handing them to another thread."""
        for kernel in sorted(STACKABLE):
            for bucket in self.buckets:
                fn = self._executable(kernel, bucket)
                args = [np.zeros(s.shape, s.dtype) for s in self._arg_shapes(kernel, bucket)]
                best = math.inf
                for _ in range(3):
                    start = time.perf_counter()
                    padding.outputs(fn(*args))
                    best = min(best, time.perf_counter() - start)
                self._seconds[(kernel, bucket)] = best

    def _ran(self, kernel: str, bucket: int, seconds: float) -> None:
        # The warm-up timing is the fastest of three calls in one moment; on a shared machine
        # that moment can be a slow one (seen: 2.0-5.6 ms for one kernel between starts), and
        # the estimate would misjudge every call after it. A faster call since lowers it.
        key = (kernel, bucket)
        if seconds < self._seconds.get(key, 0.0):
            self._seconds[key] = seconds

    def compiled_shapes(self) -> list[tuple[str, int, int | None]]:
        """(kernel, row bucket, direction bucket or slot count or None) of every executable
        ``warmup`` compiles: one trace each."""
        return [(kernel, bucket, extra) for kernel in self._jitted
                for bucket in (self.slot_buckets if kernel.endswith("_stack") else self.buckets)
                for extra in self._extra_sizes(kernel)]

    def bucket_for(self, n: int) -> int:
        """The smallest bucket that holds n rows (n at most the largest bucket)."""
        return padding.smallest(self.buckets, n)

    def slots_for(self, count: int) -> int:
        """The smallest compiled slot count that holds ``count`` requests (at most the largest)."""
        return padding.smallest(self.slots, count)

    def _extra_sizes(self, kernel: str) -> tuple[int | None, ...]:
        if kernel.endswith("_stack"):
            return self.slots
        return self.direction_buckets if kernel in derivatives.MANY else (None,)

    def _executable(self, kernel: str, bucket: int, extra: int | None = None) -> Callable:
        key = (kernel, bucket, extra)
        fn = self._compiled.get(key)
        if fn is None:
            # Compiled outside any lock, so warm-up threads compile in parallel; after warm-up
            # every key is present and this is one dict lookup.
            fn = self._jitted[kernel].lower(*self._arg_shapes(kernel, bucket, extra)).compile()
            fn = self._compiled.setdefault(key, fn)
        return fn

    def _arg_shapes(self, kernel: str, n: int, r: int | None = None) -> list[jax.ShapeDtypeStruct]:
        """Argument shapes for n rows and r directions; for a stacked kernel, r slots."""
        m, k, p = self.n_inputs, self.n_outputs, self.n_weights
        shapes = (stacking.arg_shapes(kernel, r, n, m, k, p) if kernel.endswith("_stack") else
                  [derivatives.arg_shape(arg, n, r, m, k, p) for arg in derivatives.ARGS[kernel]])
        return [jax.ShapeDtypeStruct(shape, self.dtype) for shape in shapes]

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

    def _weights_arg(self, w: np.ndarray | None) -> jax.Array | np.ndarray:
        if w is None:
            return self._state[1]
        return as_vector("w", w, self.n_weights, self.dtype)

    def _x(self, x: np.ndarray, finite: bool = True) -> np.ndarray:
        return as_matrix("x", x, self.n_inputs, self.dtype,
                         "one row per sample, one column per input", finite)

    def _run(self, kernel: str, w, arrays: dict[str, np.ndarray],
             summed: int | None = None) -> list[np.ndarray]:
        """Run ``kernel`` on checked ``arrays`` (named as in ``derivatives.ARGS``): rows padded to
        buckets and cut into chunks of the largest, directions likewise.

        Output ``summed`` (an index, or None) is a sum over rows (pw of a VJP): its chunks are
        added; every other output is per row and its chunks are concatenated.
        """
        names = derivatives.ARGS[kernel][1:]
        n = arrays["x"].shape[0]
        largest = self.buckets[-1]
        parts: list[list[np.ndarray]] = []
        for start in range(0, n, largest):
            rows = min(largest, n - start)
            bucket = self.bucket_for(rows)
            chunk = {name: padding.pad_rows(arrays[name][start:start + rows], bucket,
                                            self._pad_row if name == "x" else None)
                     if derivatives.is_per_row(name) else arrays[name] for name in names}
            outs = self._over_directions(kernel, bucket, w, [chunk[name] for name in names])
            parts.append([o if j == summed else o[:rows] for j, o in enumerate(outs)])
        return [padding.combine([part[j] for part in parts], j == summed, axis=0)
                for j in range(len(parts[0]))]

    def _over_directions(self, kernel: str, bucket: int, w, args: list[np.ndarray]) -> list[np.ndarray]:
        """One compiled call, or, for a many-direction kernel, one per chunk of the largest
        direction bucket, each padded with zero directions."""
        names = derivatives.ARGS[kernel][1:]
        if kernel not in derivatives.MANY:
            start = time.perf_counter()
            outs = padding.outputs(self._executable(kernel, bucket)(w, *args))
            self._ran(kernel, bucket, time.perf_counter() - start)
            return outs
        r = next(a.shape[-1] for name, a in zip(names, args) if derivatives.is_directional(name))
        largest = self.direction_buckets[-1]
        pieces = []
        for start in range(0, r, largest):
            count = min(largest, r - start)
            size = padding.smallest(self.direction_buckets, count)
            padded = [padding.pad_directions(a[..., start:start + count], size)
                      if derivatives.is_directional(name) else a for name, a in zip(names, args)]
            outs = padding.outputs(self._executable(kernel, bucket, size)(w, *padded))
            pieces.append([o[..., :count] for o in outs])
        return [padding.combine([piece[j] for piece in pieces], False, axis=-1)
                for j in range(len(pieces[0]))]

    def __repr__(self) -> str:
        return (f"Model(name={self.name!r}, version={self.version}, kind={self.spec.kind!r}, "
                f"m={self.n_inputs}, k={self.n_outputs}, p={self.n_weights}, dtype={self.dtype})")


