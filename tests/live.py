"""A real ``gradserve serve`` process on loopback, for tests about the process and the wire."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

import gradserve

TEST_BUCKETS = "1,8,64"  # fewer buckets compile faster; chunking is tested in the engine
TEST_DIRECTION_BUCKETS = "4"
# Fewer stacked kernels too (slots 4 and 16, rows up to 8); batching is tested in the data plane.
TEST_BATCHING = {"GRADSERVE_BATCH_MAX_SIZE": "16", "GRADSERVE_BATCH_MAX_ROWS": "8"}
# Servers of one test session share a compilation cache, so only the first compiles.
CACHE = Path(os.environ.get("GRADSERVE_TEST_CACHE", Path(tempfile.gettempdir()) / "gradserve-test-jax-cache"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def copy_demo_repository(dest: Path) -> Path:
    """A writable copy of the bundled demo repository (PUT /weights writes versions)."""
    shutil.copytree(gradserve.demo_repository(), dest, ignore=shutil.ignore_patterns("*.md"))
    return dest


class LiveServer:
    """Start ``gradserve serve`` and wait (bounded) until /readyz answers 200."""

    def __init__(self, models: Path, *, env: dict[str, str] | None = None,
                 args: list[str] | None = None, port: int | None = None, log: Path | None = None,
                 command: list[str] | None = None):
        self.models = Path(models)
        self.command = command or [sys.executable, "-m", "gradserve.cli"]
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "GRADSERVE_BUCKETS": TEST_BUCKETS, **TEST_BATCHING,
                    "GRADSERVE_DIRECTION_BUCKETS": TEST_DIRECTION_BUCKETS, "PYTHONUNBUFFERED": "1",
                    "JAX_PLATFORMS": "cpu", "GRADSERVE_COMPILATION_CACHE": str(CACHE), **(env or {})}
        self.args = args or []
        self.log_path = log or (self.models.parent / f"server-{self.port}.log")
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 120.0) -> "LiveServer":
        self._log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [*self.command, "serve", "--models", str(self.models),
             "--port", str(self.port), *self.args],
            env=self.env, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited with {self.process.returncode}:\n{self.logs()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"the server was not ready within {timeout} s:\n{self.logs()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self) -> "LiveServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
