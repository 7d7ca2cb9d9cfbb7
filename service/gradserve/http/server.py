"""Running the app under uvicorn."""

from __future__ import annotations

import contextlib
import copy
import signal

import uvicorn
import uvicorn.config

from ..settings import Settings

__all__ = ["serve"]

APP_FACTORY = "gradserve.http.app:app_from_env"


class _Server(uvicorn.Server):
    """uvicorn's server, minus re-raising SIGTERM/SIGINT after the graceful shutdown: a drained
    service then exits 0, which process supervisors read as a clean stop."""

    @contextlib.contextmanager
    def capture_signals(self):
        previous = {sig: signal.signal(sig, self.handle_exit)
                    for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def _log_config(level: str) -> dict:
    """uvicorn's logging plus the service's logger, and the root logger for the warnings of the
    libraries (JAX's among them). uvicorn applies it in every worker process, which a logging
    set-up made in the parent would not reach."""
    config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    config["formatters"]["gradserve"] = {
        "format": "%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s"}
    config["handlers"]["gradserve"] = {"class": "logging.StreamHandler", "formatter": "gradserve",
                                       "stream": "ext://sys.stderr"}
    config["loggers"]["gradserve"] = {"handlers": ["gradserve"], "level": level.upper(),
                                      "propagate": False}
    config["root"] = {"handlers": ["gradserve"], "level": "WARNING"}
    return config


def serve(settings: Settings, workers: int = 1, graceful_timeout: float = 30.0) -> int:
    """Serve until stopped; returns the process exit code. Each worker builds its app from the
    ``GRADSERVE_*`` environment, so settings must be there."""
    options = dict(factory=True, host=settings.host, port=settings.port,
                   log_level=settings.log_level, log_config=_log_config(settings.log_level),
                   # Off also above info, where uvicorn would format every request's line
                   # only to drop it.
                   access_log=settings.access_log and settings.log_level in ("debug", "info"),
                   timeout_graceful_shutdown=graceful_timeout)
    if workers > 1:
        uvicorn.run(APP_FACTORY, workers=workers, **options)  # uvicorn's own supervisor
        return 0
    server = _Server(uvicorn.Config(APP_FACTORY, **options))
    server.run()
    return 0 if server.started else 3
