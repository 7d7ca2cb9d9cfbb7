"""Domain errors to HTTP, in one place: ``{"error": {"type": ..., "message": ...}}``.

Another protocol's router answers in its own error shape through ``translating_route``: the
status of every domain error still comes from ``status_of`` here.
"""

from __future__ import annotations

import logging
from typing import Callable

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import errors as e

log = logging.getLogger("gradserve")

STATUS: dict[type[e.GradserveError], int] = {
    e.MalformedBody: 400,
    e.Unauthorized: 401,
    e.Forbidden: 403,
    e.ModelNotFound: 404,
    e.BodyTimeout: 408,
    e.WeightsConflict: 412,
    e.PayloadTooLarge: 413,
    e.UnsupportedMediaType: 415,
    e.InvalidInput: 422,
    e.Unavailable: 503,
    e.DeadlineExceeded: 504,
    e.ModelFormatError: 500,
}
_HTTP_TYPES = {404: "NotFound", 405: "MethodNotAllowed", 413: "PayloadTooLarge"}


def status_of(exc: e.GradserveError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def json_response(doc: dict, status: int = 200, headers: dict | None = None) -> Response:
    return Response(orjson.dumps(doc), status_code=status, headers=headers,
                    media_type="application/json")


def error_response(status: int, type_: str, message: str, headers: dict | None = None,
                   extra: dict | None = None) -> Response:
    return json_response({"error": {"type": type_, "message": message, **(extra or {})}},
                         status, headers)


def headers_of(exc: e.GradserveError) -> dict[str, str]:
    """The headers a domain error's answer carries, whatever the protocol's body shape."""
    headers = {}
    if isinstance(exc, e.Unavailable) and exc.retry_after is not None:
        headers["Retry-After"] = str(max(1, round(exc.retry_after)))
    if isinstance(exc, e.Unauthorized):
        headers["WWW-Authenticate"] = "Bearer"
    return headers


def domain_response(exc: e.GradserveError, method: str, path: str) -> Response:
    """The answer to a domain error: its status, its headers, the typed body."""
    status = status_of(exc)
    headers = headers_of(exc)
    extra = {}
    if isinstance(exc, e.InvalidInput) and exc.status is not None:
        extra["status"] = int(exc.status)
    if status >= 500:
        log.error("%s %s failed: %s", method, path, exc.message)
    return error_response(status, exc.type, exc.message, headers or None, extra)


async def _domain(request: Request, exc: e.GradserveError) -> Response:
    return domain_response(exc, request.method, request.url.path)


async def _http(request: Request, exc: StarletteHTTPException) -> Response:
    type_ = _HTTP_TYPES.get(exc.status_code, "HTTPError")
    message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
    if exc.status_code == 404:
        message = f"no route {request.method} {request.url.path}; see /docs for the API"
    return error_response(exc.status_code, type_, message, getattr(exc, "headers", None))


async def _validation(request: Request, exc: RequestValidationError) -> Response:
    first = exc.errors()[0] if exc.errors() else {}
    where = ".".join(str(p) for p in first.get("loc", ()))
    return error_response(422, "InvalidInput", f"{where}: {first.get('msg', 'invalid')}")


def unexpected_response(exc: Exception, method: str, path: str) -> Response:
    """The answer to an error nobody expected (a bug of ours), logged with its traceback."""
    log.error("%s %s: unexpected error", method, path, exc_info=exc)
    return error_response(500, "InternalError", f"an internal error occurred ({type(exc).__name__}); "
                          "it has been logged")


async def _unexpected(request: Request, exc: Exception) -> Response:
    return unexpected_response(exc, request.method, request.url.path)


def translating_route(render: Callable[[e.GradserveError], Response]) -> type[APIRoute]:
    """A route class for a protocol router: its domain errors, raised by a handler or by a
    dependency, are answered by ``render`` (the protocol's error shape) instead of the REST one."""

    class TranslatingRoute(APIRoute):
        def get_route_handler(self):
            handler = super().get_route_handler()

            async def translated(request: Request) -> Response:
                try:
                    return await handler(request)
                except e.GradserveError as exc:
                    if status_of(exc) >= 500:
                        log.error("%s %s failed: %s", request.method, request.url.path, exc.message)
                    return render(exc)

            return translated

    return TranslatingRoute


def install(app: FastAPI) -> None:
    app.add_exception_handler(e.GradserveError, _domain)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(Exception, _unexpected)
