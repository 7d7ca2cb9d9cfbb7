"""The per-request time limit, as a plain ASGI wrapper around the app.

A request gets ``request_timeout`` seconds from its first byte to its answer. When they run out
the answer depends on whose turn it was: a body still being awaited is the caller's fault (408
``BodyTimeout``: a slow or lying client cannot hold a connection and its buffers forever); work
still running is ours (504 ``DeadlineExceeded``). Both carry the typed error body. A compiled
call cannot be interrupted: it finishes on its thread and its result is dropped.

Every request gets the same limit, so deadlines fall due in arrival order: one timer, set for the
oldest request still running, watches them all. ``asyncio.timeout`` per request would set and
cancel a timer of its own each time, about 4 µs of the event loop's time per request where the
loop is what limits a batching service's requests/s (BENCHMARKS.md).
"""

from __future__ import annotations

import asyncio

from ..errors import BodyTimeout, DeadlineExceeded
from .errors import domain_response

__all__ = ["RequestTimeoutMiddleware"]


def _announces_body(scope) -> bool:
    for name, value in scope.get("headers", ()):
        if name == b"transfer-encoding" or (name == b"content-length" and value.strip() != b"0"):
            return True
    return False


class _Deadline:
    """One running request's: its task, when it is due, and whether it was cancelled for it."""

    __slots__ = ("task", "when", "cancelling", "expired")

    def __init__(self, task: asyncio.Task, when: float):
        self.task, self.when = task, when
        self.cancelling = task.cancelling()  # cancellations asked before ours: not ours to undo
        self.expired = False


class RequestTimeoutMiddleware:
    """Answers 408 or 504 when a request outlives ``timeout`` seconds."""

    def __init__(self, app, timeout: float):
        self.app = app
        self.timeout = timeout
        # The running requests' deadlines, oldest first (a dict: ordered, O(1) removal), of the
        # loop that serves them; a test may serve one app from several loops in turn.
        self._running: dict[_Deadline, None] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        body_done = not _announces_body(scope)
        started = False

        async def receive_tracked():
            nonlocal body_done
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_done = True
            return message

        async def send_tracked(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        loop = asyncio.get_running_loop()
        task = asyncio.current_task(loop)
        deadline = self._watch(loop, task)
        try:
            await self.app(scope, receive_tracked, send_tracked)
        except asyncio.CancelledError as exc:
            # Ours only if we cancelled it and nobody else did too (as ``asyncio.timeout``).
            if not deadline.expired or task.uncancel() > deadline.cancelling:
                raise
            if started:  # half an answer is out: only closing the connection is left
                raise TimeoutError(f"the request outlived {self.timeout:g} s") from exc
            if body_done:
                writes = scope["method"] == "PUT" or scope["path"].endswith("/restore")
                error = DeadlineExceeded(
                    f"the request did not finish within {self.timeout:g} s "
                    "(GRADSERVE_REQUEST_TIMEOUT)" + ("; the update may still be stored: read the "
                                                     "weights' ETag to know" if writes else ""))
            else:
                error = BodyTimeout(
                    f"the request body did not arrive within {self.timeout:g} s "
                    "(GRADSERVE_REQUEST_TIMEOUT); was its Content-Length right?")
            await domain_response(error, scope["method"], scope["path"])(scope, receive, send)
        finally:
            self._running.pop(deadline, None)

    def _watch(self, loop: asyncio.AbstractEventLoop, task: asyncio.Task) -> _Deadline:
        if loop is not self._loop:  # a new loop: the old one's requests and timer are gone
            self._loop, self._running, self._timer = loop, {}, None
        deadline = _Deadline(task, loop.time() + self.timeout)
        self._running[deadline] = None
        if self._timer is None:
            self._timer = loop.call_at(deadline.when, self._expire)
        return deadline

    def _expire(self) -> None:
        """Cancel the requests that are due, oldest first; set the timer for the next one."""
        self._timer = None
        now = self._loop.time()
        while self._running:
            deadline = next(iter(self._running))
            if deadline.when > now:
                self._timer = self._loop.call_at(deadline.when, self._expire)
                return
            del self._running[deadline]
            deadline.expired = True
            deadline.task.cancel()
