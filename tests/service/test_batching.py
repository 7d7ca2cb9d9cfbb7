"""Dynamic batching through the data plane and the HTTP app: merged requests get the results of
unbatched ones, a failed batch fails every request in it and only them, and a full queue sheds
load with 503 + Retry-After while the service keeps serving.

To make requests meet in one batch without timing anything, a test first occupies the only
compute thread with a gate (a batch that waits for an event), queues its requests behind it, then
opens the gate.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import re
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import jax
import numpy as np
import pytest

import gradserve
from gradserve import InvalidInput, Unavailable
from gradserve.batching import Batcher
from gradserve.dataplane import YOUNG_COLLECTION_EVERY
from gradserve.http import create_app
from gradserve.metrics import Metrics
from gradserve.settings import Settings
from factories import random_inputs, random_model

QUEUE_SIZE = 80  # more than the mixed test admits at once


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    repo = gradserve.ModelRepository(tmp_path_factory.mktemp("batching") / "models")
    base = random_model(41, m=3, k=2)
    repo.write("net", base.spec, base.get_weights())
    # A generous inline budget: a stalled warm-up timing must not make a small call look slow.
    settings = Settings(models=repo.root, buckets=(1, 4), direction_buckets=(2,), compute_threads=1,
                        batch_max_size=8, batch_max_rows=4, queue_size=QUEUE_SIZE,
                        inline_max_ms=100)
    app = create_app(settings)
    app.state.dataplane.load()  # what the lifespan does; the transport below does not run it
    yield app
    app.state.dataplane.close()


@pytest.fixture(scope="module")
def plane(app):
    return app.state.dataplane


@pytest.fixture(scope="module")
def reference(plane):
    """The same model called in process: each call computed alone, no batching."""
    return plane.model("net")


@contextlib.contextmanager
def tiny_plane(tmp_path, seed: int, **settings):
    """A loaded data plane of its own serving one small model, "tiny", with ``settings``."""
    repo = gradserve.ModelRepository(tmp_path / "models")
    base = random_model(seed, m=2, k=1)
    repo.write("tiny", base.spec, base.get_weights())
    plane = create_app(Settings(models=repo.root, buckets=(1,), direction_buckets=(2,),
                                **settings)).state.dataplane
    plane.load()
    try:
        yield plane
    finally:
        plane.close()


class Gate:
    """Holds the only compute thread until opened."""

    def __init__(self, plane):
        self.plane = plane
        self.started, self.opened = threading.Event(), threading.Event()
        plane.batcher.add_queue("gate", self._hold, ("gate", "gate"))

    def _hold(self, calls):
        self.started.set()
        self.opened.wait(30)
        return [None] * len(calls)

    async def __aenter__(self):
        self.task = asyncio.ensure_future(self.plane.batcher.submit("gate", None))
        await asyncio.to_thread(self.started.wait, 30)
        return self

    async def queued(self, count: int) -> None:
        """Let the event loop run until ``count`` requests wait behind the gate."""
        for _ in range(10_000):
            if self.plane.batcher.waiting >= count:
                return
            await asyncio.sleep(0)
        raise AssertionError(f"only {self.plane.batcher.waiting} of {count} requests were queued")

    async def __aexit__(self, *exc):
        self.opened.set()
        await self.task


def batches(plane, method: str) -> tuple[float, float]:
    """(batches run, requests in them) for model net and ``method``, from the metrics."""
    get = plane.metrics.registry.get_sample_value
    labels = {"model": "net", "method": method}
    return (get("gradserve_batch_size_count", labels) or 0.0,
            get("gradserve_batch_size_sum", labels) or 0.0)


def requests_of(model, seed: int):
    """Mixed requests: every method; stored, shared and distinct w; sizes from 1 row to more
    than a slot holds; forward derivatives with and without dx."""
    rng = np.random.default_rng(seed)
    w0 = model.get_weights()
    out = []
    for i, n in enumerate((1, 1, 2, 4, 1, 9, 3, 1)):
        x = random_inputs(model, n, seed=seed + i)
        for weights in ("stored", "same", "distinct"):
            w = {"stored": None, "same": w0, "distinct": w0 * (1 + 0.05 * rng.normal(size=w0.shape))}[weights]
            dx = rng.normal(size=x.shape) if i % 2 else None
            out.append(("evaluate", dict(x=x, w=w)))
            out.append(("forward_derivative", dict(w=w, dw=rng.normal(size=w0.shape), x=x, dx=dx)))
            out.append(("gradient", dict(w=w, x=x, py=rng.normal(size=(n, model.n_outputs)))))
    return out


def test_merged_requests_get_the_unbatched_results(plane, reference):
    model = plane.model("net")
    requests = requests_of(model, seed=1)
    traces = model.trace_count
    before = {m: batches(plane, m) for m in ("evaluate", "forward_derivative", "gradient")}

    async def run():
        async with Gate(plane) as gate:
            tasks = [asyncio.ensure_future(getattr(plane, method)("net", **args))
                     for method, args in requests]
            await gate.queued(len(tasks))
        return await asyncio.gather(*tasks)

    results = asyncio.run(run())
    exact = jax.default_backend() == "cpu"
    for (method, args), result in zip(requests, results, strict=True):
        expected = getattr(reference, method)(**args)
        for got, want in zip(*(r if isinstance(r, tuple) else (r,) for r in (result, expected)), strict=True):
            if exact:
                np.testing.assert_array_equal(got, want)
            else:
                np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)
    assert model.trace_count == traces  # batching never compiles after warm-up
    for method, (count, total) in before.items():
        after_count, after_total = batches(plane, method)
        assert after_total - total == len(requests) // 3
        assert after_count - count < after_total - total  # requests were merged


def test_a_bad_request_fails_alone(plane, reference):
    model = plane.model("net")
    x = random_inputs(model, 2)
    w, py = model.get_weights(), np.ones((2, model.n_outputs))
    nan_x, nan_w, huge_py = x.copy(), w.copy(), np.full_like(py, 1.7e308)
    nan_x[1, 2], nan_w[5] = np.nan, np.inf

    async def run():
        async with Gate(plane) as gate:
            good = [asyncio.ensure_future(plane.evaluate("net", x + i)) for i in range(3)]
            good += [asyncio.ensure_future(plane.gradient("net", w, x + i, py)) for i in range(2)]
            with pytest.raises(InvalidInput, match=r"x must have shape \(n, 3\)"):
                await plane.evaluate("net", x[:, :2])  # refused before it is queued
            # Entries are checked, and results, in the batch: each of these fails there, alone.
            bad = [asyncio.ensure_future(plane.evaluate("net", nan_x)),
                   asyncio.ensure_future(plane.gradient("net", nan_w, x, py)),
                   asyncio.ensure_future(plane.gradient("net", w, x, huge_py))]
            await gate.queued(8)
        return (await asyncio.gather(*good),
                await asyncio.gather(*bad, return_exceptions=True))

    before = batches(plane, "gradient")
    good, bad = asyncio.run(run())
    for i, y in enumerate(good[:3]):
        np.testing.assert_array_equal(y, reference.evaluate(x + i))
    for i, (pw, px) in enumerate(good[3:]):
        want = reference.gradient(w, x + i, py)
        np.testing.assert_array_equal(pw, want[0])
        np.testing.assert_array_equal(px, want[1])
    messages = [r"x must be finite; x\[1, 2\] is nan", r"w must be finite; w\[5\] is inf",
                "gradient produced a non-finite result"]
    for error, message in zip(bad, messages, strict=True):
        assert isinstance(error, InvalidInput)
        assert re.search(message, error.message), error.message
    count, total = batches(plane, "gradient")
    assert total - before[1] == 4 and count - before[0] < 4  # the bad ones shared a batch


def test_a_failed_batch_fails_every_request_in_it(plane):
    runs = []

    def explode(calls):
        runs.append(len(calls))
        raise RuntimeError("device lost")

    plane.batcher.add_queue("explode", explode, ("explode", "explode"))

    async def run():
        async with Gate(plane) as gate:
            tasks = [asyncio.ensure_future(plane.batcher.submit("explode", i)) for i in range(5)]
            await gate.queued(5)
        return await asyncio.gather(*tasks, return_exceptions=True)

    errors = asyncio.run(run())
    assert runs == [5]
    assert all(isinstance(e, RuntimeError) and str(e) == "device lost" for e in errors)


def test_a_full_queue_answers_503_with_retry_after_and_keeps_serving(app, plane, reference):
    model = plane.model("net")
    x = random_inputs(model, 1)
    body = {"x": x.tolist()}
    shed = plane.metrics.registry.get_sample_value

    async def run():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            async with Gate(plane) as gate:  # the gate is one admitted request
                queued = [asyncio.ensure_future(client.post("/models/net/evaluate", json=body))
                          for _ in range(QUEUE_SIZE - 1)]
                await gate.queued(QUEUE_SIZE - 1)
                refused = await client.post("/models/net/evaluate", json=body)
            answered = await asyncio.gather(*queued)
            after = await client.post("/models/net/evaluate", json=body)
        return refused, answered, after

    before = shed("gradserve_shed_requests_total", {"model": "net", "method": "evaluate"}) or 0
    refused, answered, after = asyncio.run(run())
    assert refused.status_code == 503
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.json()["error"]["type"] == "Unavailable"
    assert "GRADSERVE_QUEUE_SIZE" in refused.json()["error"]["message"]
    assert [r.status_code for r in answered] == [200] * (QUEUE_SIZE - 1)
    assert after.status_code == 200
    np.testing.assert_array_equal(np.array(after.json()["y"]), reference.evaluate(x))
    assert shed("gradserve_shed_requests_total", {"model": "net", "method": "evaluate"}) == before + 1


def test_batching_settings():
    assert Settings(batch_max_size=64).batch_slots() == (2, 4, 8, 16, 32, 64)
    assert Settings(batch_max_size=10).batch_slots() == (2, 4, 8, 10)
    assert Settings(batch_max_size=2).batch_slots() == (2,)
    assert Settings(batch_max_size=64, batching=False).batch_slots() == ()
    assert Settings(batch_max_size=1).batch_slots() == ()


def test_queue_size_applies_with_batching_off(tmp_path):
    """Turning merging off keeps the bounded queue: shedding does not depend on batching."""
    with tiny_plane(tmp_path, 42, batching=False, compute_threads=1, queue_size=3) as plane_off:
        async def run():
            async with Gate(plane_off) as gate:
                x = random_inputs(plane_off.model("tiny"), 1)
                queued = [asyncio.ensure_future(plane_off.evaluate("tiny", x)) for _ in range(2)]
                await gate.queued(2)  # with the gate running: three admitted
                with pytest.raises(Unavailable) as refused:
                    await plane_off.evaluate("tiny", x)
            await asyncio.gather(*queued)
            return refused.value

        assert asyncio.run(run()).retry_after >= 1
        assert batches_of(plane_off, "tiny") == (2.0, 2.0)  # each request ran alone


def batches_of(plane, model: str) -> tuple[float, float]:
    get = plane.metrics.registry.get_sample_value
    labels = {"model": model, "method": "evaluate"}
    return get("gradserve_batch_size_count", labels), get("gradserve_batch_size_sum", labels)


# --- a lone caller's quick request runs at once, on the calling thread ---------------------------

def _thread_of_runner(calls):
    return [threading.get_ident()] * len(calls)


@pytest.fixture
def lone_batcher():
    """A batcher of its own with a long lone gap, so a slow machine cannot make two callers
    look apart (or one caller look alone) by accident."""
    executor = ThreadPoolExecutor(1)
    yield Batcher(executor, workers=1, max_size=8, max_wait=0.0, queue_size=8, metrics=Metrics(),
                  lone_gap=0.5)
    executor.shutdown()


def test_a_lone_callers_quick_request_runs_on_the_calling_thread(lone_batcher):
    batcher = lone_batcher

    async def run():
        loop_thread = threading.get_ident()
        submit = lambda caller, quick: batcher.submit(  # noqa: E731
            "probe", None, runner=_thread_of_runner, caller=caller, quick=quick)
        alone = [await submit("a", True) for _ in range(3)]
        slow = await submit("a", False)  # not quick: a compute thread, even alone
        company = [await submit("b", True), await submit("a", True)]  # two callers: queued
        unknown = await submit(None, True)  # a caller we cannot tell apart: never lone
        await asyncio.sleep(batcher.lone_gap * 1.5)
        alone_again = await submit("a", True)
        return loop_thread, alone, slow, company, unknown, alone_again

    loop_thread, alone, slow, company, unknown, alone_again = asyncio.run(run())
    assert alone == [loop_thread] * 3
    assert slow != loop_thread
    assert loop_thread not in company
    assert unknown != loop_thread
    assert alone_again == loop_thread


def test_a_quick_request_with_another_in_progress_runs_on_a_compute_thread(lone_batcher):
    """The front end is still receiving or decoding another request (one caller's large body
    can take longer than the lone gap): the caller is not lone, whatever the gap says."""
    batcher = lone_batcher

    async def run():
        batcher.metrics.in_progress = 2  # this request and another one
        crowded = await batcher.submit("probe", None, runner=_thread_of_runner, caller="a",
                                       quick=True)
        batcher.metrics.in_progress = 1  # only this one
        alone = await batcher.submit("probe", None, runner=_thread_of_runner, caller="a",
                                     quick=True)
        return threading.get_ident(), crowded, alone

    loop_thread, crowded, alone = asyncio.run(run())
    assert crowded != loop_thread
    assert alone == loop_thread


def test_requests_in_progress_are_counted_and_released(app, plane):
    """What the lone-caller rule reads: every HTTP request counts while it is served, one that
    fails included, and none is left counted once answered."""
    async def run():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            ok = await client.post("/models/net/evaluate", json={"x": [[0.1, 0.2, 0.3]]})
            bad = await client.post("/models/net/evaluate", json={"x": [[0.1]]})
            scrape = await client.get("/metrics")
        return ok.status_code, bad.status_code, scrape.text

    ok, bad, text = asyncio.run(run())
    assert (ok, bad) == (200, 422)
    assert "\ngradserve_http_requests_in_progress 1.0\n" in text  # the scrape itself
    assert plane.metrics.in_progress == 0


def test_a_quick_request_queues_behind_admitted_ones(lone_batcher):
    """The same lone caller, but a request of its own is still running: the quick one waits
    its turn on a compute thread instead of overtaking it on the loop."""
    batcher, release = lone_batcher, threading.Event()

    def hold(calls):
        release.wait(30)
        return _thread_of_runner(calls)

    async def run():
        held = asyncio.ensure_future(batcher.submit("held", None, runner=hold, caller="a"))
        await asyncio.sleep(0)  # admitted, running on the compute thread
        quick = asyncio.ensure_future(batcher.submit(
            "probe", None, runner=_thread_of_runner, caller="a", quick=True))
        await asyncio.sleep(0)
        waited = not quick.done()
        release.set()
        return threading.get_ident(), waited, await held, await quick

    loop_thread, waited, _, ran_on = asyncio.run(run())
    assert waited
    assert ran_on != loop_thread


def test_inline_requests_over_http_get_the_unbatched_results(app, plane, reference):
    """One client (one connection) calling in turn: every quick request runs inline, and its
    answer is bitwise the engine's."""
    model = plane.model("net")
    x = random_inputs(model, 3, seed=5)
    py = np.random.default_rng(5).normal(size=(3, model.n_outputs))
    get = plane.metrics.registry.get_sample_value
    labels = {"model": "net", "method": "gradient"}

    async def run():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            await asyncio.sleep(plane.batcher.lone_gap * 2)
            return [await client.post("/models/net/gradient", json={"x": x.tolist(), "py": py.tolist()})
                    for _ in range(4)]

    inline_before = get("gradserve_inline_requests_total", labels) or 0
    batches_before = batches(plane, "gradient")
    answers = asyncio.run(run())
    pw, px = reference.gradient(None, x, py)
    for answer in answers:
        assert answer.status_code == 200
        np.testing.assert_array_equal(np.array(answer.json()["pw"]), pw)
        np.testing.assert_array_equal(np.array(answer.json()["px"]), px)
    assert get("gradserve_inline_requests_total", labels) == inline_before + 4
    assert batches(plane, "gradient") == batches_before


def test_inline_max_ms_zero_keeps_every_call_on_the_compute_threads(tmp_path):
    with tiny_plane(tmp_path, 43, inline_max_ms=0) as plane_off:
        x = random_inputs(plane_off.model("tiny"), 1)

        async def run():
            for _ in range(3):
                await plane_off.evaluate("tiny", x, caller="a")

        asyncio.run(run())
        assert batches_of(plane_off, "tiny") == (3.0, 3.0)
        assert not plane_off.metrics.registry.get_sample_value(
            "gradserve_inline_requests_total", {"model": "tiny", "method": "evaluate"})


def test_the_inline_budget_splits_calls_by_their_timed_cost(tmp_path, monkeypatch):
    """With the default budget, a lone caller's call timed within it runs inline and one timed
    beyond it goes to a compute thread (the timings stand in for a small and a large call)."""
    with tiny_plane(tmp_path, 44) as plane_default:
        model = plane_default.model("tiny")
        budget = plane_default.settings.inline_max_ms / 1000
        x = random_inputs(model, 1)
        get = plane_default.metrics.registry.get_sample_value
        labels = {"model": "tiny", "method": "evaluate"}

        def run(seconds):
            monkeypatch.setattr(model, "estimated_seconds", lambda call: seconds)
            asyncio.run(plane_default.evaluate("tiny", x, caller="a"))
            return get("gradserve_inline_requests_total", labels) or 0, batches_of(
                plane_default, "tiny")[0] or 0

        assert run(budget * 0.9) == (1, 0)
        assert run(budget * 1.1) == (1, 1)


# --- when a batch starts: after the loop's turn, with company if it comes soon ------------------

@pytest.fixture
def sizes_batcher():
    """A batcher of its own with two threads free and a runner that records each batch's size."""
    executor, sizes = ThreadPoolExecutor(2), []

    def record(calls):
        sizes.append(len(calls))
        return list(calls)

    batcher = Batcher(executor, workers=2, max_size=8, max_wait=0.0, queue_size=16,
                      metrics=Metrics())
    batcher.add_queue("probe", record, ("probe", "probe"))
    yield batcher, sizes
    executor.shutdown()


def test_requests_queued_in_one_turn_of_the_loop_leave_together(sizes_batcher):
    """Both threads are free, yet requests that join in one turn of the loop (as the answers of
    one batch bring their callers back together) run as one batch, not one by one."""
    batcher, sizes = sizes_batcher

    async def run():
        return await asyncio.gather(*(batcher.submit("probe", i) for i in range(5)))

    assert asyncio.run(run()) == list(range(5))
    assert sizes == [5]


def test_a_partial_batch_waits_for_a_request_still_arriving(sizes_batcher, monkeypatch):
    """While the front end is still receiving another request, a queued one waits for it (with
    threads free), and both leave together once it is submitted."""
    batcher, sizes = sizes_batcher
    monkeypatch.setattr(gradserve.batching, "COMPANY_WAIT", 30.0)  # no deadline in this test

    async def run():
        body = asyncio.Event()

        async def arriving():
            with batcher.arrival():
                await body.wait()  # its body is on its way
            return await batcher.submit("probe", "late")

        late = asyncio.ensure_future(arriving())
        await asyncio.sleep(0)
        early = asyncio.ensure_future(batcher.submit("probe", "early"))
        for _ in range(20):
            await asyncio.sleep(0)
        held = (batcher.arriving, batcher.waiting, list(sizes))
        body.set()
        return held, await early, await late

    held, early, late = asyncio.run(run())
    assert held == (1, 1, [])
    assert (early, late) == ("early", "late")
    assert sizes == [2]
    assert batcher.arriving == 0


def test_an_arrival_that_never_submits_holds_a_batch_briefly(sizes_batcher, monkeypatch):
    """A request whose body fails to decode leaves without submitting: the batch waiting for it
    starts then. One that stalls mid-body delays it by COMPANY_WAIT at most."""
    batcher, sizes = sizes_batcher

    async def failed_arrival():
        monkeypatch.setattr(gradserve.batching, "COMPANY_WAIT", 30.0)
        decoding = asyncio.Event()

        async def arriving():
            with batcher.arrival():
                await decoding.wait()
                raise InvalidInput("the body is not valid JSON")

        doomed = asyncio.ensure_future(arriving())
        await asyncio.sleep(0)
        waiting = asyncio.ensure_future(batcher.submit("probe", "a"))
        await asyncio.sleep(0)
        decoding.set()
        with pytest.raises(InvalidInput):
            await doomed
        return await asyncio.wait_for(waiting, 10)

    async def stalled_arrival():
        monkeypatch.setattr(gradserve.batching, "COMPANY_WAIT", 0.05)
        with batcher.arrival():  # never submits while the other runs
            return await asyncio.wait_for(batcher.submit("probe", "b"), 10), batcher.arriving

    assert asyncio.run(failed_arrival()) == "a"
    assert asyncio.run(stalled_arrival()) == ("b", 1)
    assert sizes == [1, 1]
    assert batcher.arriving == 0


def test_compute_requests_are_counted_while_arriving_and_released(app, plane):
    """What a partial batch waits for: the HTTP front end counts a compute request from its
    first byte to its submission, and releases it whether it is served or refused."""
    async def run():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            ok = await client.post("/models/net/evaluate", json={"x": [[0.1, 0.2, 0.3]]})
            malformed = await client.post("/models/net/evaluate", content=b"{not json",
                                          headers={"content-type": "application/json"})
            wrong = await client.post("/models/net/evaluate", json={"x": [[0.1]]})
        return ok.status_code, malformed.status_code, wrong.status_code

    assert asyncio.run(run()) == (200, 400, 422)
    assert plane.batcher.arriving == 0


def test_a_partial_batch_waits_briefly_while_another_batch_runs(sizes_batcher, monkeypatch):
    """One batch runs and a thread is free: requests queued meanwhile wait for company, at most
    COMPANY_WAIT, rather than leaving one by one on the free thread."""
    batcher, sizes = sizes_batcher
    release = threading.Event()

    def hold(calls):
        release.wait(30)
        return list(calls)

    batcher.add_queue("held", hold, ("held", "held"))

    async def run(wait):
        monkeypatch.setattr(gradserve.batching, "COMPANY_WAIT", wait)
        release.clear()
        held = asyncio.ensure_future(batcher.submit("held", None))
        first = asyncio.ensure_future(batcher.submit("probe", 1))
        for _ in range(20):
            await asyncio.sleep(0)
        second = asyncio.ensure_future(batcher.submit("probe", 2))
        for _ in range(20):
            await asyncio.sleep(0)
        waited = list(sizes)
        if wait < 1:  # a short wait: they leave while the other batch still runs
            results = await asyncio.wait_for(asyncio.gather(first, second), 10)
            release.set()
        else:
            release.set()
            results = await asyncio.gather(first, second)
        await held
        return waited, results

    try:
        assert asyncio.run(run(30.0)) == ([], [1, 2])
        assert sizes == [2]
        sizes.clear()
        waited, results = asyncio.run(run(0.05))
        assert results == [1, 2] and sum(sizes) == 2
    finally:
        release.set()


def test_a_loaded_plane_freezes_start_up_objects_and_collects_young_ones_less_often(plane):
    # Both keep the event loop's time per request down once serving (dataplane.load).
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold()[0] >= YOUNG_COLLECTION_EVERY > 700  # Python's default
