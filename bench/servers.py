"""The servers under test: gradserve, and the two peers in their own environments.

Each runs as a child process on loopback, is waited for (bounded) until it answers, and is
stopped by its process id. The peers' virtual environments live in a scratch folder outside the
repository and are made on first use (pip; skipped, with a note, where that fails, e.g. on a
machine without network).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# The peers as first measured, and the JAX this service runs, so all three run the same XLA.
UMBRIDGE = ["umbridge==1.2.10"]
TESSERACT = ["tesseract-core[runtime]==1.15.0", "equinox"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A child process serving on ``port``; ``ready_path`` answers 200 once it serves."""

    def __init__(self, name: str, argv: list[str], port: int, ready_path: str, log: Path,
                 env: dict[str, str] | None = None, cwd: Path | None = None):
        self.name, self.argv, self.port, self.ready_path = name, argv, port, ready_path
        self.url = f"http://127.0.0.1:{port}"
        self.log_path, self.env, self.cwd = log, env, cwd
        self.process: subprocess.Popen | None = None

    def start(self) -> "Server":
        self._log = open(self.log_path, "ab")
        self.process = subprocess.Popen(self.argv, stdout=self._log, stderr=subprocess.STDOUT,
                                        env={**os.environ, **(self.env or {})}, cwd=self.cwd,
                                        start_new_session=True)
        return self

    def wait_ready(self, timeout: float = 600.0) -> "Server":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}; see {self.log_path}")
            try:
                if httpx.get(self.url + self.ready_path, timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"{self.name} was not ready within {timeout:.0f} s; see {self.log_path}")

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        # Its own session: uvicorn or aiohttp workers started by it go with it.
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self._log.close()


def gradserve(repo: Path, work: Path, *, batching: bool, label: str, workers: int = 1) -> Server:
    port = free_port()
    env = {"GRADSERVE_BATCHING": "true" if batching else "false",
           "GRADSERVE_COMPILATION_CACHE": str(work / "jax-cache"),
           # Driver and server share an accelerator: neither may take most of its memory.
           "XLA_PYTHON_CLIENT_PREALLOCATE": "false",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "service"), os.environ.get("PYTHONPATH", "")])}
    argv = [sys.executable, "-m", "gradserve.cli", "serve", "--models", str(repo), "--port", str(port),
            "--workers", str(workers)]
    return Server(label, argv, port, "/readyz", work / f"{label}.log", env)


def peer_python(work: Path, peer: str, log) -> Path | None:
    """The peer environment's python, made on first use; None if it cannot be made."""
    venv = work / f"venv-{peer}"
    python = venv / "bin" / "python"
    stamp = venv / ".bench-ready"
    if stamp.exists():
        return python
    import jax  # the version this service runs

    packages = (UMBRIDGE if peer == "umbridge" else TESSERACT) + [
        f"jax=={jax.__version__}", f"jaxlib=={jax.__version__}", "httpx", "numpy"]
    log(f"setting up the {peer} environment in {venv} (first run only) ...")
    try:
        if venv.exists():
            shutil.rmtree(venv)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
        # Few retries: on a machine without network this fails in seconds, not minutes.
        subprocess.run([str(python), "-m", "pip", "install", "-q", "--retries", "0", "--timeout", "5",
                        *packages], check=True, capture_output=True, timeout=900)
    except (subprocess.SubprocessError, OSError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        log(f"  no {peer} environment ({type(exc).__name__}): {detail.decode(errors='replace')[-300:]}")
        return None
    stamp.touch()
    return python


def umbridge(python: Path, work: Path) -> Server:
    port = free_port()
    argv = [str(python), str(HERE / "peers" / "umbridge_server.py"), "--port", str(port)]
    return Server("umbridge", argv, port, "/Info", work / "umbridge.log", {"JAX_PLATFORMS": "cpu"})


def tesseract(python: Path, work: Path) -> Server:
    port = free_port()
    out = work / "tesseract-out"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    runtime = python.parent / "tesseract-runtime"
    argv = [str(runtime), "serve", "--host", "127.0.0.1", "--port", str(port), "--num-workers", "1"]
    env = {"TESSERACT_API_PATH": str(HERE / "peers" / "tesseract_api.py"),
           "TESSERACT_OUTPUT_PATH": str(out), "JAX_PLATFORMS": "cpu"}
    return Server("tesseract", argv, port, "/health", work / "tesseract.log", env, cwd=HERE / "peers")
