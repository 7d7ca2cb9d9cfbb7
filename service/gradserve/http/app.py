"""The app factory: ``create_app(settings)`` builds the app; its lifespan loads the models,
watches the repository for new versions and drains on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.middleware import Middleware
from starlette.types import ASGIApp

from .. import __version__
from ..dataplane import DataPlane
from ..device import log_device
from ..metrics import Metrics
from ..settings import Settings
from ..watcher import RepositoryWatcher
from . import errors, routes, schemas, umbridge, v2
from .compute import ComputeLane
from .drain import drain_on_signals
from .limits import RequestTimeoutMiddleware

log = logging.getLogger("gradserve")

DESCRIPTION = """Derivatives of tabular neural models y = F(x, w), NeurEco Tabular style:
`get_weights`, `set_weights`, `forward_derivative` (forward mode) and `gradient` (reverse mode),
plus `evaluate`, several directions per call, full `jacobian`s and `hessian_vector` products.
Arrays travel as JSON nested lists or, with `Content-Type` / `Accept:
application/x-safetensors`, as little-endian binary tensors. Errors are
`{"error": {"type", "message"}}`. The same models are served over the UM-Bridge protocol
(`/Info`, `/Evaluate`, ...) and the Open Inference Protocol (`/v2/...`)."""


class MetricsMiddleware:
    """Counts answers by route template and status, times them, and counts the requests in
    progress (a plain ASGI wrapper: the per-request cost is a few microseconds)."""

    def __init__(self, app, metrics: Metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        status = 500

        async def send_status(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        self.metrics.in_progress += 1
        try:
            await self.app(scope, receive, send_status)
        finally:
            self.metrics.in_progress -= 1
            route = scope.get("route")
            self.metrics.observe_request(getattr(route, "path", "unmatched"), status,
                                         time.perf_counter() - start)


# OpenTelemetry's stand-ins for providers nobody has set (what FastAPI itself looks for).
_UNSET_PROVIDERS = frozenset({("opentelemetry.trace", "ProxyTracerProvider"),
                              ("opentelemetry.metrics._internal", "_ProxyMeterProvider"),
                              ("opentelemetry._logs._internal", "ProxyLoggerProvider")})


def telemetry_config() -> dict | None:
    """FastAPI's native OpenTelemetry as FastAPI sets it up (None) when OpenTelemetry is
    configured as the app is built (a provider set, or FastAPI asked to configure it from the
    environment); off otherwise. Left on, FastAPI asks on every request whether providers have
    been set since: about 3 µs of the event loop's time per request (BENCHMARKS.md)."""
    from opentelemetry import _logs, metrics, trace

    if os.getenv("FASTAPI_OTEL_AUTO_CONFIGURE", "").lower() == "true":
        return None
    for provider in (trace.get_tracer_provider(), metrics.get_meter_provider(),
                     _logs.get_logger_provider()):
        if (type(provider).__module__, type(provider).__name__) not in _UNSET_PROVIDERS:
            return None
    return {"tracing": False, "metrics": False, "logs": False}


class _FrontedAPI(FastAPI):
    """FastAPI with the service's own layers (``front``, outermost first) in front of the
    framework's: its error pages, exception telemetry and body limit, then the router. A
    compute request, taken by the compute lane, never passes through the framework's layers,
    which cost about a tenth of the event loop's time per batched request (BENCHMARKS.md); the
    lane answers an unexpected error as the error pages would. Every other request passes
    through all of them, as before."""

    def __init__(self, front: list[Middleware], **kwargs):
        self.front = front
        super().__init__(**kwargs)

    def build_middleware_stack(self) -> ASGIApp:
        app = super().build_middleware_stack()
        for cls, args, kwargs in reversed(self.front):
            app = cls(app, *args, **kwargs)
        return app


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app. Models are loaded and compiled by its lifespan, before it serves."""
    settings = settings or Settings()
    plane = DataPlane(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        log.info("gradserve %s: loading %s on %s", __version__, settings.models, plane.device)
        log_device(plane.device_info)
        if plane.keys.open:
            log.warning("no API keys configured: every caller may read, compute and write")
        else:
            log.info("%d API key(s) configured", len(plane.keys.keys))
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, plane.load)
        watching = None
        if settings.poll_interval > 0:
            watching = asyncio.create_task(RepositoryWatcher(plane).run(settings.poll_interval))
        try:
            with drain_on_signals(plane, settings.drain_seconds, loop):
                yield
        finally:
            if watching is not None:
                watching.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watching
            plane.close()

    # Outermost first: metrics see the 408/504 answers of the time limit, and both wrap the
    # compute lane and everything behind it.
    front = [Middleware(MetricsMiddleware, metrics=plane.metrics),
             Middleware(RequestTimeoutMiddleware, timeout=settings.request_timeout),
             Middleware(ComputeLane, routes=routes.router.routes)]
    app = _FrontedAPI(front, title="gradserve", version=__version__, description=DESCRIPTION,
                      lifespan=lifespan, telemetry=telemetry_config())
    app.state.dataplane = plane
    app.state.settings = settings
    errors.install(app)
    # Three front ends, one data plane: each router only translates its protocol to DataPlane
    # calls.
    app.include_router(routes.router)
    app.include_router(umbridge.router)
    app.include_router(v2.router)
    schemas.install(app)
    return app


def app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory``: settings from ``GRADSERVE_*`` variables."""
    return create_app(Settings())
