"""Dynamic batching: concurrent compute requests merged into few compiled calls, and the bounded
queue that sheds load.

Every compute request, its shapes checked, waits in one queue per key (the data plane's: model
and method). Whenever a compute thread is free, the batcher takes the oldest waiting request and
every request queued behind it for the same model and method (up to ``max_size``) and runs them
as one batch on that thread (``Model.run_many``). A lone client therefore never waits: its
request finds a free thread and leaves at once, as a batch of one. Under load, requests arriving
while the threads are busy pile up and leave together, which is where batching pays.

"At once" means once the requests the event loop already holds have joined: a batch starts at
the end of the loop's turn in which its requests were queued. And a partial batch waits for
company, ``COMPANY_WAIT`` at most, while the front end is still receiving or decoding other
requests (``arrival``) or while another batch runs. Without this, when a batch's answers go out
and its callers all send again, the first request back would find a free thread and leave
alone, the next too, and so on: under 64 closed-loop clients two thirds of the batches held one
request, each paying a whole compiled call and a thread hand-off, on a machine already busy
with the batch before it (BENCHMARKS.md).

One exception: a *quick* request (the data plane's call: its compiled call fits the inline
budget, ``GRADSERVE_INLINE_MAX_MS``) from a *lone* caller, finding nothing admitted, runs at
once on the calling thread, sparing it the hand-off to a thread and back (0.1-0.6 ms on a small
virtual machine, more than a small call costs). A caller is lone while no other caller has sent
a request for ``lone_gap`` seconds and no other request is in progress (say, still arriving or
being decoded; the HTTP front end counts them in ``Metrics.in_progress``): an optimisation loop
on one connection gets the shortest path, and as soon as callers overlap their requests queue
and batch as above. The event loop is then held for at most that one quick call. (Without the
count, a burst of large bodies that each take longer than ``lone_gap`` to decode would look
like lone callers one after another, run one by one on the loop and never meet the bounded
queue.)

The queue is bounded: a request that finds ``queue_size`` requests already admitted (waiting or
in a running batch) is refused at once with ``Unavailable`` (503 + Retry-After), which is the
service's load shedding, batching on or off. A batch that fails hands its error to every request
in it. A request's own bad input fails that request alone: shapes are checked before it is
queued, and a runner puts the error of a call it refuses (say, a non-finite entry, checked on
the compute thread) in that call's place among the results.

Everything here runs on the event loop thread, so its state needs no lock; only the batches
themselves run on the executor.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Callable, Hashable

from .errors import Unavailable
from .metrics import Metrics

__all__ = ["COMPANY_WAIT", "Batcher"]

# Longest a partial batch waits for company with a thread free, while requests are arriving or
# another batch runs: long enough for a body on its way to be read and decoded (tens of
# microseconds for a small one) and for callers to bunch up behind a running batch of small
# requests; short enough that a slow upload or a long batch holds the others back by little.
# (Measured under 64 clients: 1 ms gave more requests/s than 2.)
COMPANY_WAIT = 0.001

# calls -> results, in order (``Model.run_many``); an exception in a call's place fails that call
Runner = Callable[[list], list]


@dataclass(eq=False)
class _Waiting:
    call: object
    future: asyncio.Future
    since: float = field(default_factory=time.perf_counter)


@dataclass(eq=False)
class _Queue:
    runner: Runner
    mergeable: Callable[[object], bool]
    waited: object  # the metrics' children labelled (model, method), looked up once
    sizes: object
    shed: object
    inline: object
    items: deque = field(default_factory=deque)
    retired: bool = False  # its owner is no longer served: dropped once empty


class Batcher:
    """Queues compute requests and runs them in batches on ``executor``.

    workers: batches running at once (the executor's threads). max_size: most requests in one
    batch (1: no merging, the queue and its bound still apply). max_wait: seconds a batch smaller
    than max_size may wait for more requests while a thread is free (0: only ``COMPANY_WAIT``,
    and only while requests are arriving or another batch runs).
    queue_size: most requests admitted (waiting or running); beyond it, ``Unavailable``.
    lone_gap: seconds without a request from another caller after which a caller is lone.
    """

    def __init__(self, executor: Executor, *, workers: int, max_size: int, max_wait: float,
                 queue_size: int, metrics: Metrics, lone_gap: float = 0.01):
        self.executor = executor
        self.workers = workers
        self.max_size = max_size
        self.max_wait = max_wait
        self.queue_size = queue_size
        self.metrics = metrics
        self.lone_gap = lone_gap
        self._last_caller: Hashable | None = None
        self._last_arrival = -math.inf
        self._company_until = -math.inf  # another caller was seen recently: nobody is lone
        self._queues: dict[Hashable, _Queue] = {}
        self._waiting = 0  # requests queued
        self._admitted = 0  # requests queued or in a running batch
        self._running = 0  # batches running
        self._timer: asyncio.TimerHandle | None = None
        self._soon = False  # a dispatch is scheduled for the end of the loop's turn
        self._arriving = 0  # requests the front end is receiving or decoding
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop the state lives on
        self._arrival = _Arrival(self)
        metrics.queue_depth.set_function(lambda: self._waiting)

    @property
    def waiting(self) -> int:
        """Requests queued, not yet in a running batch."""
        return self._waiting

    @property
    def arriving(self) -> int:
        """Requests the front end is receiving or decoding (``arrival``)."""
        return self._arriving

    @property
    def admitted(self) -> int:
        """Requests queued or in a running batch: what ``queue_size`` bounds."""
        return self._admitted

    def add_queue(self, key: Hashable, runner: Runner, labels: tuple[str, str],
                  mergeable: Callable[[object], bool] = lambda call: True) -> None:
        """Declare the queue of ``key`` (``submit`` declares it on first use): its batches run
        ``runner``; a call that is not ``mergeable`` (a large one) runs in a batch of its own."""
        m = self.metrics
        self._queues[key] = _Queue(runner, mergeable, m.queue_seconds.labels(*labels),
                                   m.batch_size.labels(*labels), m.shed.labels(*labels),
                                   m.inline.labels(*labels))

    def retire(self, owner: object) -> None:
        """Drop the queues whose key starts with ``owner`` (a model no longer served) once
        their waiting requests have left. Safe from any thread (a model is replaced off the
        event loop)."""
        loop = self._loop
        if loop is not None and not loop.is_closed() and not _running_in(loop):
            loop.call_soon_threadsafe(self._retire, owner)
        else:
            self._retire(owner)

    def _retire(self, owner: object) -> None:
        for key, queue in list(self._queues.items()):
            if isinstance(key, tuple) and key and key[0] is owner:
                queue.retired = True
                if not queue.items:
                    del self._queues[key]

    async def submit(self, key: Hashable, call: object, *, runner: Runner | None = None,
                     labels: tuple[str, str] = ("", ""),
                     mergeable: Callable[[object], bool] = lambda call: True,
                     caller: Hashable | None = None, quick: bool = False):
        """The result of ``call``, once its batch has run; ``Unavailable`` at once if
        ``queue_size`` requests are admitted. A batch's error is raised here, in every request
        of that batch. ``runner``, ``labels``, ``mergeable``: as ``add_queue``, the first time.
        ``caller``: who sends it (a connection; None: unknown, never lone); ``quick``: short
        enough to hold the event loop for, so run at once when the caller is lone and nothing
        waits."""
        queue = self._queues.get(key)
        if queue is None:
            self.add_queue(key, runner, labels, mergeable)
            queue = self._queues[key]
        now = time.perf_counter()
        if caller is None or (caller != self._last_caller
                              and now - self._last_arrival <= self.lone_gap):
            self._company_until = now + self.lone_gap
        self._last_caller, self._last_arrival = caller, now
        if (quick and now >= self._company_until and not self._admitted
                and self.metrics.in_progress <= 1):  # itself, or a caller that is not HTTP
            queue.inline.inc()
            return _outcome(queue.runner([call])[0])
        if self._admitted >= self.queue_size:
            queue.shed.inc()
            raise Unavailable(f"the compute queue is full ({self._admitted} requests admitted, "
                              "GRADSERVE_QUEUE_SIZE): retry shortly", retry_after=1)
        self._loop = loop = asyncio.get_running_loop()
        waiting = _Waiting(call, loop.create_future())
        queue.items.append(waiting)
        self._waiting += 1
        self._admitted += 1
        self._dispatch_soon()
        try:
            return await waiting.future
        finally:
            self._admitted -= 1

    def arrival(self) -> "_Arrival":
        """Around receiving and decoding a compute request, up to its ``submit`` (a context
        manager): while any request is arriving, a partial batch waits for it (at most
        ``COMPANY_WAIT``)."""
        return self._arrival

    def _arrived(self) -> None:
        self._arriving -= 1
        if not self._arriving and self._waiting:
            self._dispatch_soon()  # it may not come: one that failed to decode, say

    # --- dispatching, on the event loop ---------------------------------------------------------

    def _dispatch_soon(self) -> None:
        """Dispatch at the end of this turn of the loop, after the requests it holds ready."""
        if not self._soon:
            self._soon = True
            asyncio.get_running_loop().call_soon(self._dispatch_now)

    def _dispatch_now(self) -> None:
        self._soon = False
        self._dispatch()

    def _dispatch(self) -> None:
        """Start batches while a thread is free and a batch is ready."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._running < self.workers and self._waiting:
            queue, wait = self._next()
            if queue is None:
                if wait is not None:  # a partial batch may still grow: look again when it may not
                    self._timer = asyncio.get_running_loop().call_later(wait, self._dispatch)
                return
            self._start(queue)

    def _next(self) -> tuple[_Queue | None, float | None]:
        """The ready queue whose oldest request has waited longest; else (None, the seconds
        until the first partial batch is due, or None). One pass: this runs per request."""
        hold = max(self.max_wait, COMPANY_WAIT if self._arriving or self._running else 0.0)
        now = time.perf_counter() if hold else 0.0
        ready: _Queue | None = None
        due: float | None = None
        for queue in self._queues.values():
            if not queue.items:
                continue
            since = queue.items[0].since
            if hold and len(queue.items) < self.max_size:
                left = since + hold - now
                if left > 0:  # a partial batch that may still grow
                    due = left if due is None else min(due, left)
                    continue
            if ready is None or since < ready.items[0].since:
                ready = queue
        return ready, None if ready is not None else due

    def _start(self, queue: _Queue) -> None:
        batch: list[_Waiting] = []
        items = queue.items
        while items and len(batch) < self.max_size:
            if batch and not queue.mergeable(items[0].call):
                break  # a large request leaves alone, after the batch ahead of it
            batch.append(items.popleft())
            if not queue.mergeable(batch[0].call):
                break
        self._waiting -= len(batch)
        if queue.retired and not items:
            self._queues = {k: q for k, q in self._queues.items() if q is not queue}
        batch = [w for w in batch if not w.future.done()]  # a client that gave up: skip it
        if not batch:
            return
        now = time.perf_counter()
        for w in batch:
            queue.waited.observe(now - w.since)
        queue.sizes.observe(len(batch))
        try:
            running = asyncio.get_running_loop().run_in_executor(
                self.executor, queue.runner, [w.call for w in batch])
        except RuntimeError:  # the executor is shut down: the service is stopping
            for w in batch:
                w.future.set_exception(Unavailable("the service is shutting down", retry_after=1))
            return
        self._running += 1
        running.add_done_callback(lambda done: self._finished(batch, done))

    def _finished(self, batch: list[_Waiting], done: asyncio.Future) -> None:
        self._running -= 1
        error = done.exception() if not done.cancelled() else asyncio.CancelledError()
        if error is None:
            for w, result in zip(batch, done.result()):
                if w.future.done():
                    continue
                if isinstance(result, BaseException):
                    w.future.set_exception(result)
                else:
                    w.future.set_result(result)
        else:
            for w in batch:  # every request of a failed batch hears why
                if not w.future.done():
                    w.future.set_exception(error)
        self._dispatch()


class _Arrival:
    """``Batcher.arrival``: a counter's context manager, one shared by every request (a class:
    a generator-based one costs the event loop a microsecond or two per request)."""

    __slots__ = ("batcher",)

    def __init__(self, batcher: Batcher):
        self.batcher = batcher

    def __enter__(self) -> None:
        self.batcher._arriving += 1

    def __exit__(self, *exc) -> None:
        self.batcher._arrived()


def _outcome(result):
    if isinstance(result, BaseException):
        raise result
    return result


def _running_in(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False
