"""Draining on SIGTERM: /readyz turns unready before the server stops accepting.

The server (uvicorn) owns SIGTERM and SIGINT: on the first it closes its listening socket, lets
the requests in flight finish (``--graceful-timeout`` bounds the wait) and stops. A load balancer
that still routes to the process in that moment gets refused connections. So, while the app
runs, the server's handler is wrapped: the first signal marks the data plane draining, which
makes /readyz answer 503 while every request is still served, and hands the signal on to the
server ``drain_seconds`` later, by when the balancer has stopped sending. A second signal is
handed on at once (a second SIGINT then forces the exit, as the server does).

It is installed by the lifespan because the lifespan runs in every worker process under any
server, and it is undone when the app stops. Signals can only be handled in the main thread, so
elsewhere (an app driven by a test client) it does nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from typing import Iterator

from ..dataplane import DataPlane

__all__ = ["drain_on_signals"]

log = logging.getLogger("gradserve")

SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextlib.contextmanager
def drain_on_signals(plane: DataPlane, delay: float,
                     loop: asyncio.AbstractEventLoop) -> Iterator[None]:
    """While inside, SIGTERM/SIGINT drain ``plane`` for ``delay`` seconds before the server's
    own handler runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in SIGNALS}

    handed_on = False

    def hand_on(sig: int) -> None:
        nonlocal handed_on
        handed_on = True
        handler = previous[sig]
        if callable(handler):
            handler(sig, None)
        else:  # the default action (or none): restore it and let the signal take its course
            signal.signal(sig, handler)
            signal.raise_signal(sig)

    def after_drain(sig: int) -> None:
        if not handed_on:  # unless a second signal already cut the drain short
            hand_on(sig)

    def on_signal(sig: int, frame: object) -> None:
        first = not plane.draining
        plane.start_draining()
        if not first or delay <= 0:
            hand_on(sig)
            return
        log.info("%s: draining for %g s (/readyz answers 503, requests are still served), "
                 "then stopping", signal.Signals(sig).name, delay)
        # call_soon_threadsafe wakes the loop, which may be asleep in select() right now.
        loop.call_soon_threadsafe(loop.call_later, delay, after_drain, sig)

    for sig in SIGNALS:
        signal.signal(sig, on_signal)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
