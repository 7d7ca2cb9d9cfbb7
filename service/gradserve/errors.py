"""The one error hierarchy of gradserve.

Every error a caller can cause, or a model file can contain, is a :class:`GradserveError`.
The hierarchy knows nothing of HTTP: the service maps each class to a status code in one place
(``gradserve.http.errors``), and the client rebuilds the same classes from the ``type`` field of
an error body.

    GradserveError
    ├── ModelFormatError       a model folder, spec or weight file is malformed
    ├── ModelNotFound          no model (or version) of that name
    ├── MalformedBody          a request body that cannot be decoded (bad JSON, truncated binary)
    ├── InvalidInput           an array has the wrong shape, dtype or a non-finite entry
    ├── PayloadTooLarge        a body or answer exceeds a configured limit
    ├── UnsupportedMediaType   a body is in an encoding the service does not speak
    ├── WeightsConflict        ``If-Match`` named a version that is no longer current
    ├── Unauthorized / Forbidden  no valid API key / the key lacks the scope
    ├── BodyTimeout            the request body did not arrive within the request timeout
    ├── DeadlineExceeded       the answer was not ready within the request timeout
    ├── Unavailable            not ready yet, or overloaded (retry later)
    ├── UnsupportedModel       a model from another tool uses what a spec cannot express
    ├── ImportCheckFailed      an imported model does not reproduce its source's outputs
    └── MissingDependency      an optional extra (``build``, ``import``) is not installed

    InvalidInput
    └── BadData                data to build from is unusable (names the column and row)
"""

from __future__ import annotations

__all__ = [
    "GradserveError",
    "ModelFormatError",
    "ModelNotFound",
    "InvalidInput",
    "MalformedBody",
    "PayloadTooLarge",
    "UnsupportedMediaType",
    "WeightsConflict",
    "Unauthorized",
    "Forbidden",
    "BodyTimeout",
    "DeadlineExceeded",
    "Unavailable",
    "BadData",
    "UnsupportedModel",
    "ImportCheckFailed",
    "MissingDependency",
]


class GradserveError(Exception):
    """Base class: ``type`` is the stable name that travels in error bodies."""

    @property
    def type(self) -> str:
        return type(self).__name__

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else self.type


class ModelFormatError(GradserveError):
    """A model folder, its spec or its weight file is malformed.

    The message names the file, the field and what was expected.
    """

    def __init__(self, path: object, field: str | None, problem: str):
        where = f"{path}" + (f": field {field!r}" if field else "")
        super().__init__(f"{where}: {problem}")
        self.path = str(path)
        self.field = field
        self.problem = problem


class ModelNotFound(GradserveError):
    """No model, or no version, of that name."""


class MalformedBody(GradserveError):
    """A request body cannot be decoded: invalid JSON, a truncated binary payload, wrong types."""


class InvalidInput(GradserveError, ValueError):
    """An argument has the wrong shape or dtype, or a non-finite value.

    ``status``, when set, is the non-zero ``set_weights`` status this refusal corresponds to.
    """

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class PayloadTooLarge(GradserveError):
    """A request body, a batch or an answer is larger than the configured limit."""


class UnsupportedMediaType(GradserveError):
    """A request body is in an encoding the service does not speak."""


class WeightsConflict(GradserveError):
    """A conditional weight update named a version that is no longer the current one."""


class Unauthorized(GradserveError):
    """No API key, or one the service does not know."""


class Forbidden(GradserveError):
    """The API key lacks the scope this operation needs."""


class BodyTimeout(GradserveError):
    """The caller did not send the body it announced within the request timeout."""


class DeadlineExceeded(GradserveError):
    """The service did not finish the request within the request timeout.

    The work may still complete: a weight update answered so may yet be stored.
    """


class Unavailable(GradserveError):
    """The service cannot take this request now (not ready, overloaded, shutting down)."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class BadData(InvalidInput):
    """A data set given to ``build`` is unusable: a missing column, a value that is not a number,
    NaN, a constant column, too few rows. The message names the column and the row."""


class UnsupportedModel(GradserveError):
    """A model from another tool (an ONNX operator, an estimator, a pipeline step) has no exact
    equivalent in a gradserve spec. The message names what is unsupported."""


class ImportCheckFailed(GradserveError):
    """An imported model's outputs differ from its source's on the check inputs by more than the
    tolerance: the translation is wrong, and nothing is written."""


class MissingDependency(GradserveError, ImportError):
    """An optional dependency is not installed; the message names the extra that brings it."""
