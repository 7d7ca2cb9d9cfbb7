"""Helpers of the hardening tests: API keys, a tiny model, the app in process, a process's memory."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import numpy as np

import gradserve
from gradserve.auth import digest
from gradserve.repository import ModelRepository

# One key per set of scopes; the name says what it holds.
KEYS = {
    "all": ("read", "compute", "write"),
    "read": ("read",),
    "compute": ("compute",),
    "write": ("write",),
    "no-read": ("compute", "write"),
    "no-compute": ("read", "write"),
    "no-write": ("read", "compute"),
}


def secret(name: str) -> str:
    """The (test) secret of key ``name``."""
    return f"test-key-{name}-0123456789abcdef"


def key_entries() -> str:
    return ";".join(f"{name}:{digest(secret(name))}:{','.join(scopes)}"
                    for name, scopes in KEYS.items())


def bearer(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret(name)}"}


def tiny_model() -> gradserve.Model:
    """y = W2·tanh(W1·x + b1) + b2 with 2 inputs, 4 hidden units, 1 output (17 weights)."""
    rng = np.random.default_rng(7)
    return gradserve.from_arrays([rng.normal(size=(2, 4)), rng.normal(size=(4, 1))],
                                 [np.zeros(4), np.zeros(1)], ["tanh", "identity"], name="tiny")


def tiny_repository(root: Path, fill: float | None = None) -> Path:
    """A repository holding only the tiny model, at version 1 (every weight ``fill`` if given)."""
    model = tiny_model()
    weights = model.get_weights() if fill is None else np.full(model.n_weights, fill)
    ModelRepository(root).write("tiny", model.spec, weights)
    return root


def rss_kib(pid: int) -> int:
    """Resident memory of a process, in KiB, from /proc/<pid>/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


class InProcess:
    """The app on given settings, loaded, called through httpx's ASGI transport: no server
    process, no lifespan (the models are loaded here), one short event loop per request."""

    def __init__(self, settings):
        from gradserve.http import create_app

        self.app = create_app(settings)
        self.plane = self.app.state.dataplane
        self.plane.load()

    def transport(self) -> httpx.ASGITransport:
        return httpx.ASGITransport(self.app)

    def request(self, method: str, path: str, **kwargs) -> httpx.Response:
        async def run():
            async with httpx.AsyncClient(transport=self.transport(), base_url="http://app") as c:
                return await c.request(method, path, **kwargs)
        return asyncio.run(run())

    def get(self, path: str, **kwargs) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def put(self, path: str, **kwargs) -> httpx.Response:
        return self.request("PUT", path, **kwargs)

    def post(self, path: str, **kwargs) -> httpx.Response:
        return self.request("POST", path, **kwargs)

    def close(self) -> None:
        self.plane.close()
