"""What every front end (REST, UM-Bridge, Open Inference Protocol) shares: the data plane as a
dependency, and reading a request body within the configured limit.

Routes reach the data plane through ``Plane`` (the compute routes, served as plain ASGI,
through the app's state, where ``get_dataplane`` finds it too), and a router-wide dependency (an
API-key scope, say) is one argument of its ``APIRouter``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from starlette.requests import ClientDisconnect
from starlette.types import Receive

from ..dataplane import DataPlane
from ..errors import PayloadTooLarge

__all__ = ["Plane", "get_dataplane", "read_body", "receive_body"]


async def get_dataplane(request: Request) -> DataPlane:
    # async: FastAPI runs a plain-function dependency on a worker thread, a thread hop per request.
    return request.app.state.dataplane


Plane = Annotated[DataPlane, Depends(get_dataplane)]


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it exceeds ``limit`` (a declared length is checked
    before reading; a chunked body is counted as it arrives)."""
    body = await receive_body(request.receive, request.headers.get("content-length"), limit)
    if body is None:
        raise ClientDisconnect()
    return body


async def receive_body(receive: Receive, declared: str | None, limit: int) -> bytes | None:
    """``read_body`` for a plain ASGI handler: the body from ``receive`` given the declared
    Content-Length; None if the client disconnected first."""
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the body is {int(declared)} bytes; the limit is {limit} "
                              "(GRADSERVE_MAX_BODY_BYTES)")
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the body exceeds the limit of {limit} bytes "
                                  "(GRADSERVE_MAX_BODY_BYTES)")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)
