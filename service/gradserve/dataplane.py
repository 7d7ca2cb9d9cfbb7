"""The data plane: models, their weights and their derivatives, with no HTTP in it.

It takes and returns numpy arrays and raises the domain errors of ``gradserve.errors``. Every
front end (the REST routes; any other protocol) calls it; none validates or computes on its own.
Compute requests are checked on arrival, then queued for the batcher (``gradserve.batching``),
which merges concurrent ones, runs them on a bounded thread pool (so an asyncio front end never
blocks on them) and sheds load beyond ``GRADSERVE_QUEUE_SIZE``.

The repository on disk is the source of truth: ``apply_refresh`` serves a version that another
process wrote (``gradserve.watcher`` finds them), and ``PUT /weights`` writes one there first.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from functools import partial
from typing import Callable

import jax
import numpy as np

from . import __version__
from .arrays import finite_result, shape_of, stacked_count
from .auth import KeyRing
from .batching import Batcher
from .device import open_device
from .engine import Model
from .errors import InvalidInput, ModelNotFound, PayloadTooLarge, Unavailable, WeightsConflict
from .metrics import Metrics
from .repository import ModelRepository
from .settings import Settings
from .spec import ModelSpec

__all__ = ["DataPlane"]

log = logging.getLogger("gradserve")

YOUNG_COLLECTION_EVERY = 10_000  # allocations between young garbage collections, once loaded


class DataPlane:
    """Everything the service does, for every front end."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.repository = ModelRepository(settings.models)
        self.metrics = Metrics()
        self.keys = KeyRing.from_settings(settings)
        # Replaced whole, never mutated, so a reader iterating it never sees it change size.
        self._models: dict[str, Model] = {}
        self._write_locks: dict[str, threading.Lock] = {}
        self._executor = ThreadPoolExecutor(settings.compute_threads, thread_name_prefix="compute")
        self.batcher = Batcher(
            self._executor, workers=settings.compute_threads,
            max_size=settings.batch_max_size if settings.batching else 1,
            max_wait=settings.batch_max_wait_ms / 1000, queue_size=settings.queue_size,
            metrics=self.metrics)
        self._inline_seconds = settings.inline_max_ms / 1000
        self._loaded = threading.Event()
        self._draining = threading.Event()
        self._load_error: BaseException | None = None
        if settings.compilation_cache is not None:
            _use_compilation_cache(settings.compilation_cache)
        # Every result is waited for at once, so dispatching CPU work asynchronously only adds
        # two thread hand-offs per call (measured: 105 -> 56 us for a one-row gradient). A
        # process-wide switch, set before the device opens because the service owns its
        # process; no effect on GPUs.
        jax.config.update("jax_cpu_enable_async_dispatch", False)
        self.device_info = open_device(settings)
        self.device = self.device_info.device

    # --- life cycle -------------------------------------------------------------------------

    def load(self) -> None:
        """Load and compile every model of the repository (blocking); ready afterwards."""
        try:
            names = self.repository.model_names()
            if not names:
                raise ModelNotFound(f"the model repository {self.repository.root} holds no model "
                                    "(expected <name>/<version>/model.json)")
            for name in names:
                start = time.perf_counter()
                self.repository.remove_stale_temporaries(name)
                spec, weights, version = self.repository.read(name)
                self._publish(self._build(name, spec, weights, version))
                log.info("loaded model %s version %d (%s, m=%d, k=%d, p=%d, %s) in %.2f s",
                         name, version, spec.kind, spec.n_inputs, spec.n_outputs, spec.n_weights,
                         spec.dtype, time.perf_counter() - start)
            if self.settings.default_model and self.settings.default_model not in self._models:
                raise ModelNotFound(f"default model {self.settings.default_model!r} is not in the "
                                    f"repository (models: {', '.join(names)})")
            # The long-lived objects made so far would otherwise be re-scanned by every full
            # collection (tens of ms each); freezing them keeps the tail latency low.
            gc.collect()
            gc.freeze()
            # A young collection scans what the requests in flight hold, dozens of them under
            # load, though reference counting frees nearly all their garbage: at Python's
            # default (every 700 allocations) that was about 9% of a batched request's CPU
            # (BENCHMARKS.md).
            young, *older = gc.get_threshold()
            gc.set_threshold(max(young, YOUNG_COLLECTION_EVERY), *older)
            self._loaded.set()
            log.info("ready: %d model(s) on %s", len(self._models), self.device)
        except BaseException as exc:
            self._load_error = exc
            raise

    @property
    def ready(self) -> bool:
        """Every model loaded and compiled, and not draining: what /readyz reports."""
        return self._loaded.is_set() and not self._draining.is_set()

    @property
    def draining(self) -> bool:
        return self._draining.is_set()

    def start_draining(self) -> None:
        """Report unready from now on (so a load balancer stops sending), yet keep serving."""
        self._draining.set()

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=False)

    def _build(self, name: str, spec: ModelSpec, weights: np.ndarray, version: int) -> Model:
        """A model with every bucket compiled (blocking: seconds for a new spec)."""
        return Model(spec, weights, name=name, version=version, buckets=self.settings.buckets,
                     direction_buckets=self.settings.direction_buckets,
                     slots=self.settings.batch_slots(), slot_rows=self.settings.batch_max_rows
                     ).warmup()

    def _publish(self, model: Model) -> None:
        self._write_locks.setdefault(model.name, threading.Lock())
        replaced = self._models.get(model.name)
        self._models = {**self._models, model.name: model}
        self.metrics.track_model(model)
        if replaced is not None:
            # Requests already queued for it still run on it (they were checked against its
            # spec); its queues go once they are empty.
            self.batcher.retire(replaced)

    # --- the repository as the source of truth ------------------------------------------------

    def served_version(self, name: str) -> int | None:
        """The version served for ``name``, None if that model is not served (yet)."""
        model = self._models.get(name)
        return None if model is None else model.version

    def apply_refresh(self, name: str, spec: ModelSpec, weights: np.ndarray, version: int) -> str:
        """Serve ``version`` of ``name``, read from the repository (blocking; call off the loop).

        Same spec as the served version: the weights are swapped in one step, nothing compiles.
        A new model or a new spec: a new model is built and compiled first, then swapped in, so
        requests never wait for a compile. A version not newer than the served one (this
        process may have written it itself) changes nothing. Returns what happened:
        "weights", "model" or "unchanged".
        """
        current = self._models.get(name)
        if current is not None and current.spec == spec:
            with self._write_locks[name]:
                if version <= current.version:
                    return "unchanged"
                current.replace_weights(weights, version)
            return "weights"
        if current is not None and version <= current.version:
            return "unchanged"
        model = self._build(name, spec, weights, version)  # compiles outside any lock
        with self._write_locks.setdefault(name, threading.Lock()):
            served = self.served_version(name)
            if served is not None and version <= served:
                return "unchanged"
            self._publish(model)
        return "model"

    def info(self) -> dict:
        """What runs where, for GET /info: versions, the device, the models and the settings
        that shape serving (nothing secret: no keys, no paths)."""
        s = self.settings
        return {
            "version": __version__, "jax_version": jax.__version__, **self.device_info.as_dict(),
            "ready": self.ready, "draining": self.draining,
            "models": [{"name": m.name, "version": m.version} for _, m in sorted(self._models.items())],
            "settings": {
                "default_model": s.default_model, "buckets": list(s.buckets),
                "direction_buckets": list(s.direction_buckets), "compute_threads": s.compute_threads,
                "inline_max_ms": s.inline_max_ms, "max_body_bytes": s.max_body_bytes,
                "max_rows": s.max_rows, "poll_interval": s.poll_interval,
                "drain_seconds": s.drain_seconds, "compilation_cache": s.compilation_cache is not None,
                "gpu_preallocate": s.gpu_preallocate, "gpu_memory_fraction": s.gpu_memory_fraction,
            },
        }

    # --- models -------------------------------------------------------------------------------

    def model_names(self) -> list[str]:
        return sorted(self._models)

    def default_model_name(self) -> str:
        """The model of the un-prefixed routes: the configured one, else the first by name."""
        return self.settings.default_model or self.model_names()[0]

    def model(self, name: str | None) -> Model:
        """The model of that name; None means the default model."""
        self._require_ready()
        name = self.default_model_name() if name is None else name
        try:
            return self._models[name]
        except KeyError:
            raise ModelNotFound(f"no model named {name!r} (models: "
                                f"{', '.join(self.model_names())})") from None

    def describe(self, name: str | None) -> dict:
        model = self.model(name)
        spec = model.spec
        return {
            "name": model.name, "kind": spec.kind, "version": model.version, "dtype": spec.dtype,
            "n_inputs": spec.n_inputs, "n_outputs": spec.n_outputs, "n_weights": spec.n_weights,
            "inputs": [{"name": f.name, "min": f.min, "max": f.max} for f in spec.inputs],
            "outputs": [{"name": f.name, "min": f.min, "max": f.max} for f in spec.outputs],
            "buckets": list(model.buckets), "device": self.device,
        }

    def _require_ready(self) -> None:
        # Loaded is enough: a draining service still answers what reaches it.
        if not self._loaded.is_set():
            if self._load_error is not None:
                raise Unavailable(f"the models failed to load: {self._load_error}")
            raise Unavailable("the service is still loading and compiling its models", retry_after=1)

    # --- weights ------------------------------------------------------------------------------

    def get_weights(self, name: str | None) -> tuple[np.ndarray, int]:
        """(weights (p, 1), version), read together so they always match."""
        model = self.model(name)
        self._check_answer_size(model.n_weights, "the weights")
        state, version = model.snapshot()
        return state.reshape(-1, 1).copy(), version

    async def set_weights(self, name: str | None, weights: np.ndarray,
                          if_version: int | None = None) -> int:
        """Store ``weights`` as a new version on disk, then serve it; returns the new version.

        Refuses (InvalidInput, with the ``set_weights`` status) a wrong shape or a non-finite
        entry, and (WeightsConflict) a stale ``if_version``. Either the new version is fully
        stored and served, or nothing changes.
        """
        model = self.model(name)
        w = model.check_weights(weights)
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, self._store_weights, model, w, if_version)

    async def restore(self, name: str | None, version: int, if_version: int | None = None) -> int:
        """Serve stored ``version`` again, stored as a new version (numbers only grow, so an
        ETag never names two different weight vectors); returns the new version.

        ModelNotFound if that version is not kept; WeightsConflict for a stale ``if_version``.
        """
        model = self.model(name)
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, self._restore, model, version, if_version)

    def versions(self, name: str | None) -> dict:
        """The stored versions of a model (oldest first) and the one served."""
        model = self.model(name)
        times = self.repository.version_times(model.name)
        return {"name": model.name, "served": model.version, "versions": [
            {"version": v, "stored_at": datetime.fromtimestamp(t, timezone.utc).isoformat()}
            for v, t in times.items()]}

    def _restore(self, model: Model, version: int, if_version: int | None) -> int:
        with self._write_locks[model.name]:  # so pruning cannot delete it while it is read
            spec, weights, _ = self.repository.read(model.name, version)
            if spec != model.spec:
                raise InvalidInput(f"version {version} of model {model.name!r} has another "
                                   "architecture than the served one; it cannot be swapped in "
                                   "while serving")
            return self._store_locked(model, weights, if_version)

    def _store_weights(self, model: Model, w: np.ndarray, if_version: int | None) -> int:
        with self._write_locks[model.name]:
            return self._store_locked(model, w, if_version)

    def _store_locked(self, model: Model, w: np.ndarray, if_version: int | None) -> int:
        if self._models.get(model.name) is not model:
            raise WeightsConflict(f"model {model.name!r} was replaced by a new version from the "
                                  "repository while this request was in flight: read it again "
                                  "and retry")
        if if_version is not None and if_version < model.version:
            raise WeightsConflict(f"model {model.name!r} is at version {model.version}, "
                                  f"not {if_version}: read the current weights and retry")
        # The repository decides: a version newer than the one served here may be on disk
        # already (another worker wrote it, and this one has not polled since).
        version = self.repository.write(model.name, model.spec, w, if_version=if_version)
        model.replace_weights(w, version)
        self.metrics.weight_updates.labels(model.name).inc()
        try:
            self.repository.prune(model.name, self.settings.keep_versions, protect={version})
        except OSError as exc:  # the update is stored and served; old versions merely linger
            log.warning("model %s: could not delete old versions: %s", model.name, exc)
        return version

    # --- compute --------------------------------------------------------------------------------

    # ``caller`` (every compute method): who sends the request, e.g. a connection; it lets a
    # lone caller's quick request skip the compute threads (see ``gradserve.batching``).

    async def evaluate(self, name: str | None, x, w=None, *, caller=None) -> np.ndarray:
        """y (n, k); see ``Model.evaluate``."""
        model = self.model(name)
        return await self._run(model, "evaluate", x, lambda: model.prepare("evaluate", x, w=w),
                               per_row=model.n_outputs, caller=caller)

    async def forward_derivative(self, name: str | None, w, dw, x, dx=None, *,
                                 caller=None) -> np.ndarray:
        """dy (n, k), or (n, k, r) for r directions at once (dw (p, r) and/or dx (n, m, r))."""
        model = self.model(name)
        r = stacked_count(shape_of(dw), 1, shape_of(dx), 2) or 1
        return await self._run(model, "forward_derivative", x,
                               lambda: model.prepare("forward_derivative", x, w=w, dw=dw, dx=dx),
                               per_row=model.n_outputs * r, directions=r, caller=caller)

    async def gradient(self, name: str | None, w, x, py, *,
                       caller=None) -> tuple[np.ndarray, np.ndarray]:
        """(pw (p, 1), px (n, m)), or (p, 1, r) and (n, m, r) for py (n, k, r)."""
        model = self.model(name)
        shape = shape_of(py)
        r = shape[-1] if shape is not None and len(shape) == 3 else 1
        return await self._run(model, "gradient", x,
                               lambda: model.prepare("gradient", x, w=w, py=py),
                               per_row=model.n_inputs * r, fixed=model.n_weights * r,
                               directions=r, caller=caller)

    async def hessian_vector(self, name: str | None, w, x, py, dw=None, dx=None, *,
                             caller=None) -> tuple[np.ndarray, np.ndarray]:
        """(hw (p, 1), hx (n, m)): the Hessian of <py, F(w, x)> applied to (dw, dx)."""
        model = self.model(name)
        return await self._run(model, "hessian_vector", x,
                               lambda: partial(model.hessian_vector, w, x, py, dw, dx),
                               per_row=model.n_inputs, fixed=model.n_weights, caller=caller)

    async def jacobian(self, name: str | None, w, x, wrt: str = "x", *,
                       caller=None) -> np.ndarray:
        """∂y_i/∂x_i (n, k, m) or ∂y_i/∂w (n, k, p) per row."""
        model = self.model(name)
        per_row = model.jacobian_size(1, wrt) if wrt in ("x", "w") else 0
        return await self._run(model, "jacobian", x, lambda: partial(model.jacobian, w, x, wrt),
                               per_row=per_row, caller=caller)

    async def _run(self, model: Model, method: str, x, prepare: Callable, per_row: int,
                   fixed: int = 0, directions: int = 1, caller=None):
        """Check the limits (rows, and the answer's size: ``fixed + rows * per_row`` numbers,
        refused before any work since the shapes alone give it), then the arguments
        (``prepare``: a ``Call``, its shapes checked, for the batched methods, else a function
        run on a compute thread), then hand the request to the batcher, which sheds load (and
        runs a lone caller's quick call at once)."""
        rows = _rows(x)
        if rows > self.settings.max_rows:
            raise PayloadTooLarge(f"x has {rows} rows; at most {self.settings.max_rows} are "
                                  "accepted per request (GRADSERVE_MAX_ROWS)")
        what = f"the {method} answer for {rows} rows" + (
            f" and {directions} directions" if directions > 1 else "")
        self._check_answer_size(fixed + rows * per_row, what, per_row, fixed)
        # A request of the wrong shape fails here; one with a non-finite entry, or a non-finite
        # result, fails in its batch: alone either way, never failing the others.
        work = prepare()
        batched = method in _BATCHED
        start = time.perf_counter()
        quick = batched and model.estimated_seconds(work) <= self._inline_seconds
        result = await self.batcher.submit(
            (model, method), work,
            runner=(partial(model.run_many, finite_results=True) if batched
                    else partial(_finite_results, method)),
            labels=(model.name, method), mergeable=_mergeable(model) if batched else _never,
            caller=caller, quick=quick)
        self.metrics.observe_compute(model.name, method, rows, time.perf_counter() - start)
        return result

    def _check_answer_size(self, size: int, what: str, per_row: int = 0, fixed: int = 0) -> None:
        limit = self.settings.max_answer_elements
        if size > limit:
            hint = ""
            if per_row and limit > fixed:
                hint = f"; send at most {(limit - fixed) // per_row} rows per request"
            raise PayloadTooLarge(f"{what} would hold {size} numbers; the limit is {limit} "
                                  f"(GRADSERVE_MAX_ANSWER_ELEMENTS){hint}")


def _rows(x) -> int:
    shape = shape_of(x)
    return shape[0] if shape else 0


_BATCHED = frozenset({"evaluate", "forward_derivative", "gradient"})  # through Model.run_many


def _mergeable(model: Model) -> Callable:
    largest = model.slot_buckets[-1] if model.slot_buckets else 0
    return lambda call: call.stackable and call.rows <= largest


def _never(call) -> bool:
    return False


def _use_compilation_cache(folder) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(folder))
    # Our kernels compile in tens of milliseconds each: cache them all, however quick.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def _finite_results(method: str, calls: list) -> list:
    """The results of the calls of a method that is never batched (each a function of no
    arguments), a result holding a non-finite number replaced by the error that refuses it:
    checked on the thread that runs it, as the inputs are (``Model.prepare`` says why). The
    batched methods check theirs in ``Model.run_many``."""
    return [finite_result(method, task()) for task in calls]
