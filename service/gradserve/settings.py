"""The service's settings: one typed class, read from ``GRADSERVE_*`` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from .engine import DEFAULT_BUCKETS, DEFAULT_DIRECTION_BUCKETS

__all__ = ["Settings"]


def _demo_repository() -> Path:
    return Path(__file__).parent / "demo_models"


class Settings(BaseSettings):
    """Every setting can be given as ``GRADSERVE_<NAME>`` (for example ``GRADSERVE_PORT=9000``)."""

    model_config = SettingsConfigDict(env_prefix="GRADSERVE_", extra="ignore", frozen=True)

    models: Path = Field(default_factory=_demo_repository)
    """The model repository: a folder of ``<name>/<version>/`` model folders."""
    host: str = "127.0.0.1"
    """Address to bind."""
    port: int = Field(8000, ge=0, le=65535)
    """Port to bind (0: any free port)."""
    default_model: str | None = None
    """Model served by the un-prefixed routes (``/gradient``...); default: the only model, or the first by name."""
    buckets: Annotated[tuple[int, ...], NoDecode] = DEFAULT_BUCKETS
    """Batch sizes compiled at start-up; larger batches are cut into chunks of the largest."""
    direction_buckets: Annotated[tuple[int, ...], NoDecode] = DEFAULT_DIRECTION_BUCKETS
    """Numbers of directions compiled at start-up for calls with several directions at once
    (dw (p, r), dx (n, m, r), py (n, k, r)); more directions are cut into chunks of the largest."""
    compute_threads: int = Field(2, ge=1, le=256)
    """Threads that run compiled model calls, off the event loop."""
    max_body_bytes: int = Field(256 * 2**20, ge=1024)
    """Largest request body accepted (413 beyond)."""
    max_rows: int = Field(1_000_000, ge=1)
    """Largest batch (rows of x) accepted in one request (413 beyond)."""
    batching: bool = True
    """Merge concurrent compute requests for the same model and method into one compiled call."""
    batch_max_size: int = Field(64, ge=1, le=4096)
    """Most requests merged into one call (the most weight vectors one stacked kernel takes)."""
    batch_max_wait_ms: float = Field(0.0, ge=0.0, le=1000.0)
    """How long a batch smaller than the maximum may wait for more requests while a compute
    thread is free; 0: start it at once, so a lone client never waits (under load, a partial
    batch still waits up to 1 ms for company: ``gradserve.batching``)."""
    batch_max_rows: int = Field(64, ge=1)
    """Requests of at most this many rows are merged; larger ones run alone (each fills the
    machine by itself). Stacked kernels are compiled for every bucket up to it."""
    inline_max_ms: float = Field(5.0, ge=0.0, le=100.0)
    """A lone caller's request whose compiled call took at most this long (timed at warm-up,
    lowered by any faster call since) runs at once on the event loop thread instead of a
    compute thread, sparing it the hand-off there and back (0.1-0.3 ms for a small call here,
    0.2-0.6 ms end to end at 4096 rows). The loop is held that long at most, and only while no
    other caller is sending: one who arrives meanwhile waits at most that long, once. 0: every
    call on a compute thread."""
    queue_size: int = Field(256, ge=1)
    """Compute requests admitted at once (running or waiting for a compute thread); one more is
    answered 503 with Retry-After at once, so latency cannot grow without bound (batching
    on or off)."""
    max_answer_elements: int = Field(2**24, ge=1)
    """Most numbers one answer may hold, e.g. n*k for evaluate, p + n*m for gradient, n*k*p for
    a Jacobian with respect to w, times r for r directions (413 beyond, before computing)."""
    request_timeout: float = Field(60.0, gt=0)
    """Seconds a request may take from its first byte: 408 if its body has not arrived by then, 504 otherwise."""
    keep_versions: int = Field(10, ge=1)
    """Weight versions kept per model; older ones are deleted after each stored update (never the served one)."""
    api_keys: str | None = None
    """API key entries 'name:sha256-hex:scope,scope', separated by ';' or new lines (docs/security.md)."""
    api_keys_file: Path | None = None
    """File of API key entries, one per line ('#' starts a comment)."""
    allow_unauthenticated: bool = False
    """Serve without API keys on a non-loopback address (refused otherwise)."""
    compilation_cache: Path | None = None
    """Folder of JAX's persistent compilation cache: a restart then loads compiled kernels
    instead of compiling them again. None: no persistent cache."""
    log_level: str = "info"
    """Log level of the service's and uvicorn's loggers."""
    access_log: bool = False
    """One log line per answered request (uvicorn's access log, at level info). Off by default:
    an optimisation loop sends thousands of requests a second, and writing a line for each
    costs 15-25% of the throughput (BENCHMARKS.md); /metrics counts and times them all."""
    poll_interval: float = Field(2.0, ge=0)
    """Seconds between scans of the repository for versions and models written by other processes (0: never)."""
    drain_seconds: float = Field(0.0, ge=0)
    """On SIGTERM, seconds to keep serving while /readyz answers 503, so a load balancer stops sending first."""
    gpu_preallocate: bool = False
    """Let JAX reserve most of the GPU's memory at start-up (one process alone on its GPU only)."""
    gpu_memory_fraction: float | None = Field(None, gt=0, le=1)
    """Share of the GPU's memory this process may take (XLA_PYTHON_CLIENT_MEM_FRACTION); None: JAX's default."""

    def batch_slots(self) -> tuple[int, ...]:
        """Slot counts of the stacked kernels: powers of 2 below the largest batch, and it
        (64: 2, 4, 8, 16, 32, 64); none when batching is off. A batch pads to the next count,
        and on a CPU every slot costs its full compute, padding included: with powers of 4 a
        batch of 17 paid for 64 (measured: 8% more requests/s under 64 clients with powers of
        2, for twice the stacked kernels compiled at start-up)."""
        if not self.batching or self.batch_max_size < 2:
            return ()
        sizes, size = [], 2
        while size < self.batch_max_size:
            sizes.append(size)
            size *= 2
        return (*sizes, self.batch_max_size)

    @field_validator("buckets", "direction_buckets", mode="before")
    @classmethod
    def _parse_buckets(cls, value):
        if isinstance(value, str):
            value = [int(v) for v in value.replace(",", " ").split()]
        return tuple(sorted(set(value)))

    @field_validator("buckets", "direction_buckets")
    @classmethod
    def _positive(cls, value):
        if not value or min(value) < 1:
            raise ValueError("buckets must be positive sizes, e.g. '1,8,64,512,4096'")
        return value
