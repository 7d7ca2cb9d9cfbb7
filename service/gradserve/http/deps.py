"""What every front end (REST, UM-Bridge, Open Inference Protocol) shares: the data plane as a
dependency, and reading a request body within the configured limit.

Routers reach the data plane only through ``Plane``, so tests can override ``get_dataplane``,
and a router-wide dependency (an API-key scope, say) is one argument of its ``APIRouter``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from ..dataplane import DataPlane
from ..errors import PayloadTooLarge

__all__ = ["Plane", "get_dataplane", "read_body"]


async def get_dataplane(request: Request) -> DataPlane:
    # async: FastAPI runs a plain-function dependency on a worker thread, a thread hop per request.
    return request.app.state.dataplane


Plane = Annotated[DataPlane, Depends(get_dataplane)]


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it exceeds ``limit`` (a declared length is checked
    before reading; a chunked body is counted as it arrives)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"the body is {int(declared)} bytes; the limit is {limit} "
                              "(GRADSERVE_MAX_BODY_BYTES)")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the body exceeds the limit of {limit} bytes "
                                  "(GRADSERVE_MAX_BODY_BYTES)")
        chunks.append(chunk)
    return b"".join(chunks)
