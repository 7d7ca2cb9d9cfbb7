"""The client's exceptions, one tree.

    GradserveError                  every error this package raises
    ├── TransportError              the server could not be reached, or did not answer in time
    │   └── TimeoutError
    ├── ProtocolError               the server answered something that is not gradserve's API
    └── APIError                    the server answered with an error body; ``status`` is the HTTP code
        ├── MalformedBody           400: the body could not be decoded
        ├── Unauthorized            401: no API key, or an unknown one
        ├── Forbidden               403: the key lacks the scope
        ├── ModelNotFound           404
        ├── WeightsConflict         412: If-Match named a version that is no longer current
        ├── PayloadTooLarge         413
        ├── UnsupportedMediaType    415
        ├── InvalidInput            422: wrong shape, wrong p, non-finite value
        ├── Unavailable             503: not ready or overloaded (retried first, honouring Retry-After)
        └── ServerError             5xx, or an error type this client does not know
            └── DeadlineExceeded    504: not finished within the server's request timeout (not
                                    retried: the work may be too big; a weight update may be stored)

The error classes are rebuilt from the ``type`` field of the server's error body, so
``except gradserve_client.InvalidInput`` catches what the server calls ``InvalidInput``.
"""

from __future__ import annotations

__all__ = [
    "GradserveError", "TransportError", "TimeoutError", "ProtocolError", "APIError",
    "MalformedBody", "Unauthorized", "Forbidden", "ModelNotFound", "WeightsConflict",
    "PayloadTooLarge", "UnsupportedMediaType", "InvalidInput", "Unavailable", "ServerError",
    "DeadlineExceeded",
]


class GradserveError(Exception):
    """Base of every exception raised by gradserve_client."""


class TransportError(GradserveError):
    """The request did not reach the server, or no answer came back."""


class TimeoutError(TransportError):  # noqa: A001 - mirrors httpx's name, scoped to this package
    """No answer within the client's timeout."""


class ProtocolError(GradserveError):
    """The server's answer is not what gradserve's API sends."""


class APIError(GradserveError):
    """The server answered with an error body ``{"error": {"type", "message"}}``."""

    def __init__(self, message: str, status: int, type_: str | None = None,
                 body: dict | None = None, retry_after: float | None = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.type = type_ or type(self).__name__
        self.body = body or {}
        self.retry_after = retry_after

    def __str__(self) -> str:
        return f"{self.status} {self.type}: {self.message}"


class MalformedBody(APIError):
    """400."""


class Unauthorized(APIError):
    """401."""


class Forbidden(APIError):
    """403."""


class ModelNotFound(APIError):
    """404."""


class WeightsConflict(APIError):
    """412."""


class PayloadTooLarge(APIError):
    """413."""


class UnsupportedMediaType(APIError):
    """415."""


class InvalidInput(APIError):
    """422."""


class Unavailable(APIError):
    """503."""


class ServerError(APIError):
    """5xx, or an error type unknown to this client."""


class DeadlineExceeded(ServerError):
    """504."""


_BY_TYPE = {cls.__name__: cls for cls in (
    MalformedBody, Unauthorized, Forbidden, ModelNotFound, WeightsConflict, PayloadTooLarge,
    UnsupportedMediaType, InvalidInput, Unavailable, DeadlineExceeded)}
_BY_STATUS = {400: MalformedBody, 401: Unauthorized, 403: Forbidden, 404: ModelNotFound,
              412: WeightsConflict, 413: PayloadTooLarge, 415: UnsupportedMediaType,
              422: InvalidInput, 503: Unavailable, 504: DeadlineExceeded}


def from_error_body(status: int, body: object, retry_after: float | None) -> APIError:
    """Rebuild the exception the server described; fall back on the status code."""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and isinstance(error.get("type"), str):
        type_, message = error["type"], str(error.get("message", ""))
    else:
        type_, message = None, f"HTTP {status} without a gradserve error body"
    cls = _BY_TYPE.get(type_) or _BY_STATUS.get(status) or (ServerError if status >= 500 else APIError)
    return cls(message, status, type_, body if isinstance(body, dict) else None, retry_after)
