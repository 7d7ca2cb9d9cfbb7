"""gradserve_client: a gradserve model over HTTP, with the in-process model's methods.

    from gradserve_client import Client
    model = Client("http://localhost:8000").model("borehole")   # .model(): the default model
    w = model.get_weights()                                     # (p, 1)
    dy = model.forward_derivative(w, dw, x, dx=None)            # (n, k)
    pw, px = model.gradient(w, x, py)                           # (p, 1), (n, m)
    jx = model.jacobian(w, x, wrt="x")                          # (n, k, m)
    hw, hx = model.hessian_vector(w, x, py, dw, dx)             # (p, 1), (n, m)
    status = model.set_weights(w)                               # 0 if stored

Depends on numpy and httpx only. Exceptions: see ``gradserve_client._errors``.
"""

from ._async import AsyncClient, AsyncModel
from ._client import Client, Model
from ._errors import (
    APIError,
    DeadlineExceeded,
    Forbidden,
    GradserveError,
    InvalidInput,
    MalformedBody,
    ModelNotFound,
    PayloadTooLarge,
    ProtocolError,
    ServerError,
    TimeoutError,
    TransportError,
    Unauthorized,
    Unavailable,
    UnsupportedMediaType,
    WeightsConflict,
)

__version__ = "0.1.0"

__all__ = [
    "APIError",
    "AsyncClient",
    "AsyncModel",
    "Client",
    "DeadlineExceeded",
    "Forbidden",
    "GradserveError",
    "InvalidInput",
    "MalformedBody",
    "Model",
    "ModelNotFound",
    "PayloadTooLarge",
    "ProtocolError",
    "ServerError",
    "TimeoutError",
    "TransportError",
    "Unauthorized",
    "Unavailable",
    "UnsupportedMediaType",
    "WeightsConflict",
]
