"""A soak under load: 32 clients call every compute method with random batch sizes, in both
encodings, for ``GRADSERVE_SOAK_SECONDS`` (default 30). Zero errors; after the warm-up (the first
quarter), resident memory stays flat and no function is compiled again."""

from __future__ import annotations

import asyncio
import os
import random
import re
import statistics
import time

import httpx
import numpy as np
import pytest

import gradserve_client as gc
from gradserve.repository import ModelRepository
from hardening_kit import rss_kib, tiny_model
from live import LiveServer, copy_demo_repository

SECONDS = float(os.environ.get("GRADSERVE_SOAK_SECONDS", "30"))
CLIENTS = 32
MODELS = {"borehole": (8, 1), "classifier": (2, 3), "tiny": (2, 1)}  # name: (m, k)


def _compiled(url: str) -> dict[str, float]:
    text = httpx.get(f"{url}/metrics", timeout=30).text
    return {m: float(v) for m, v in re.findall(r'gradserve_compiled_functions\{model="(\w+)"\} (\S+)', text)}


async def _client(url: str, seed: int, stop: float, counts: dict, errors: list) -> None:
    rng = random.Random(seed)
    nprng = np.random.default_rng(seed)
    encoding = "binary" if seed % 2 else "json"
    async with gc.AsyncClient(url, encoding=encoding, timeout=60, retries=0) as client:
        handles = {name: client.model(name) for name in MODELS}
        weights = {name: await handles[name].get_weights() for name in MODELS}
        while time.monotonic() < stop:
            name = rng.choice(list(MODELS))
            m, k = MODELS[name]
            n = rng.choice([1, 1, 3, 8, 20, 64, 100, 150])  # every bucket, padding, and chunking
            x = nprng.uniform(0.2, 0.8, size=(n, m))
            if name == "borehole":  # raw units of the borehole inputs
                x = np.array([0.1, 1000, 90000, 1000, 90, 760, 1400, 11000]) * (0.9 + 0.2 * x)
            model, w = handles[name], weights[name]
            try:
                method = rng.choice(["evaluate", "forward_derivative", "gradient"])
                if method == "evaluate":
                    out = await model.evaluate(x)
                    assert out.shape == (n, k)
                elif method == "forward_derivative":
                    out = await model.forward_derivative(w, nprng.normal(size=w.shape), x)
                    assert out.shape == (n, k)
                else:
                    pw, px = await model.gradient(None, x, nprng.normal(size=(n, k)))
                    assert pw.shape == w.shape and px.shape == (n, m)
                counts[method] = counts.get(method, 0) + 1
            except Exception as exc:  # every failure is counted and reported, none stops the soak
                errors.append(f"{name} {method} n={n}: {type(exc).__name__}: {exc}")


@pytest.mark.slow
def test_soak_zero_errors_flat_memory_no_recompile(tmp_path):
    repo = copy_demo_repository(tmp_path / "models")
    tiny = tiny_model()
    ModelRepository(repo).write("tiny", tiny.spec, tiny.get_weights())
    with LiveServer(repo, env={"GRADSERVE_COMPUTE_THREADS": "2"}) as server:
        pid = server.process.pid
        start = time.monotonic()
        stop = start + SECONDS
        warm = start + SECONDS / 4
        counts: dict[str, int] = {}
        errors: list[str] = []
        samples: list[tuple[float, int]] = []
        compiled_at_warm: dict[str, float] = {}

        async def watch():
            while time.monotonic() < stop:
                samples.append((time.monotonic() - start, rss_kib(pid)))
                if not compiled_at_warm and time.monotonic() >= warm:
                    compiled_at_warm.update(await asyncio.to_thread(_compiled, server.url))
                await asyncio.sleep(0.5)

        async def run():
            await asyncio.gather(watch(), *(_client(server.url, seed, stop, counts, errors)
                                             for seed in range(CLIENTS)))

        asyncio.run(run())
        compiled_at_end = _compiled(server.url)
        assert server.process.poll() is None
    total = sum(counts.values())
    after_warm = [rss for t, rss in samples if t >= SECONDS / 4]
    first, last = statistics.median(after_warm[:6]), statistics.median(after_warm[-6:])
    print(f"\nsoak: {CLIENTS} clients, {SECONDS:.0f} s, {total} calls ({total / SECONDS:.0f}/s) "
          f"{counts}, {len(errors)} errors; RSS after warm-up {first / 1024:.0f} -> "
          f"{last / 1024:.0f} MiB, peak {max(r for _, r in samples) / 1024:.0f} MiB; compiled "
          f"functions {compiled_at_warm} -> {compiled_at_end}")
    assert not errors, errors[:5]
    assert total > CLIENTS * 5
    assert compiled_at_end == compiled_at_warm and compiled_at_end
    assert last - first < max(30 * 1024, 0.05 * first), (first, last)
