"""Watch the model repository: serve the versions and models that other processes write.

The repository on disk is the source of truth, as TensorFlow Serving treats its base path: every
``poll_interval`` seconds the watcher lists each model's latest complete version and, where it
is newer than the served one or the model is new, reads it and hands it to
``DataPlane.apply_refresh``, off the event loop. When only the weights changed they are swapped
in at once; a new spec or a new model is compiled first and swapped in after, so no request
waits for a compile. A version that fails to load is logged and skipped, the served version
keeps serving, and that version is tried again only once its files change (a copy still in
progress, say).

So a ``PUT /weights`` through one worker is served by every other worker on the repository
within ``poll_interval`` seconds plus the time to read the version (milliseconds when only the
weights changed) or to compile it (seconds, for a new model). Versions only move forward:
removing a model or a version from disk takes effect at the next restart.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time

from .dataplane import DataPlane
from .errors import GradserveError, ModelNotFound
from .repository import SPEC_FILE, WEIGHTS_FILE

__all__ = ["RepositoryWatcher"]

log = logging.getLogger("gradserve")

_Stamp = tuple[tuple[int, int] | None, ...]


class RepositoryWatcher:
    """Polls one data plane's repository and applies what changed."""

    def __init__(self, plane: DataPlane):
        self._plane = plane
        # (model, version) -> the files' (mtime, size) when loading it failed: not retried
        # (nor logged again) until they change.
        self._failed: dict[tuple[str, int], _Stamp] = {}
        self._stop = threading.Event()

    async def run(self, interval: float) -> None:
        """Scan every ``interval`` seconds until cancelled; each scan runs in a worker thread."""
        try:
            while True:
                await asyncio.sleep(interval)
                try:
                    await asyncio.to_thread(self.poll_once)
                except Exception:  # e.g. the volume went away: keep serving, try again later
                    log.exception("repository: scanning %s failed; next try in %g s",
                                  self._plane.repository.root, interval)
        finally:
            self._stop.set()  # a scan still running in its thread stops at the next model

    def poll_once(self) -> dict[str, str]:
        """Scan the repository once and apply what changed (blocking: it may compile).

        Returns ``{model: outcome}`` for the models whose latest version was acted on:
        "weights" (swapped in), "model" (compiled and swapped in), "unchanged" or "skipped".
        """
        outcomes = {}
        for name in self._plane.repository.model_names():
            if self._stop.is_set():
                break
            outcome = self._refresh(name)
            if outcome is not None:
                outcomes[name] = outcome
        return outcomes

    def _refresh(self, name: str) -> str | None:
        repository, plane = self._plane.repository, self._plane
        try:
            latest = repository.latest_version(name)
        except ModelNotFound:  # removed since it was listed
            return None
        served = plane.served_version(name)
        if served is not None and latest <= served:
            return None
        key, stamp = (name, latest), self._stamp(name, latest)
        if self._failed.get(key) == stamp:
            return None
        start = time.perf_counter()
        try:
            spec, weights, version = repository.read(name, latest)
            outcome = plane.apply_refresh(name, spec, weights, version)
        except Exception as exc:
            self._failed[key] = stamp
            plane.metrics.repository_refreshes.labels(name, "skipped").inc()
            keeps = "not served" if served is None else f"version {served} keeps serving"
            log.warning("repository: skipping model %s version %d (%s): %s", name, latest, keeps,
                        exc, exc_info=not isinstance(exc, GradserveError))
            return "skipped"
        self._failed.pop(key, None)
        if outcome != "unchanged":
            plane.metrics.repository_refreshes.labels(name, outcome).inc()
            what = "new weights" if outcome == "weights" else (
                "new model, compiled" if served is None else "new spec, compiled")
            log.info("repository: serving model %s version %d (%s) after %.2f s", name, version,
                     what, time.perf_counter() - start)
        return outcome

    def _stamp(self, name: str, version: int) -> _Stamp:
        folder = self._plane.repository.root / name / str(version)
        stamp = []
        for file in (SPEC_FILE, WEIGHTS_FILE):
            try:
                st = (folder / file).stat()
                stamp.append((st.st_mtime_ns, st.st_size))
            except OSError:
                stamp.append(None)
        return tuple(stamp)
