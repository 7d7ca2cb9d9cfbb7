"""The per-request time limit, as a plain ASGI wrapper around the app.

A request gets ``request_timeout`` seconds from its first byte to its answer. When they run out
the answer depends on whose turn it was: a body still being awaited is the caller's fault (408
``BodyTimeout``: a slow or lying client cannot hold a connection and its buffers forever); work
still running is ours (504 ``DeadlineExceeded``). Both carry the typed error body. A compiled
call cannot be interrupted: it finishes on its thread and its result is dropped.
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


class RequestTimeoutMiddleware:
    """Answers 408 or 504 when a request outlives ``timeout`` seconds."""

    def __init__(self, app, timeout: float):
        self.app = app
        self.timeout = timeout

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

        deadline = asyncio.timeout(self.timeout)
        try:
            async with deadline:
                await self.app(scope, receive_tracked, send_tracked)
        except TimeoutError:
            if not deadline.expired() or started:
                raise  # not ours, or half an answer is out: only closing the connection is left
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
