"""The synchronous client."""

from __future__ import annotations

import time
from typing import Any, Callable

import httpx
import numpy as np

from ._base import (DEFAULT_TIMEOUT, Call, ClientConfig, ModelCalls, error_of, should_retry,
                    transport_error)
from ._connections import Answer, ConnectionPool, usable

Request = Callable[[str, str, "bytes | None", "dict[str, str]"], Answer]

__all__ = ["Client", "Model"]


def _send(request: Request, config: ClientConfig, call: Call) -> Any:
    if call.local:
        return call.decode({})
    attempt = 0
    while True:
        try:
            response = request(call.method, call.path, call.content, call.headers)
        except httpx.TransportError as exc:
            error = transport_error(config, call, exc)
        else:
            if not should_retry(config, call, response, attempt):
                return call.read(response)
            error = error_of(response)
        if not call.retry or attempt >= config.retries:
            raise error from None
        attempt += 1
        time.sleep(config.delay(attempt, error))


class Model:
    """One model on the server, with the methods of the in-process model.

    Shapes: x, dx (n, m); w, dw (p, 1) or (p,); py (n, k). ``w=None`` means the weights stored on
    the server. Several directions in one call: dw (p, r), dx (n, m, r), py (n, k, r), answered
    with a last axis of r. Returns float64 numpy arrays.
    """

    def __init__(self, client: "Client", name: str | None):
        self._client = client
        self._calls = ModelCalls(client.config, name)
        self.name = name
        self.version: int | None = None  # the weights version last read or written
        self._info: dict | None = None

    def _set_version(self, version: int) -> None:
        self.version = version

    def info(self) -> dict:
        """Metadata (name, kind, sizes, input/output ranges), fetched once and cached."""
        if self._info is None:
            self._info = self._client._send(self._calls.info())
        return self._info

    def get_weights(self) -> np.ndarray:
        """The stored weights, (p, 1). Also records their version in ``self.version``."""
        return self._client._send(self._calls.get_weights(self._set_version))

    def set_weights(self, w: Any, if_match: int | None = None) -> int:
        """Store ``w`` (p, 1) as a new version on the server. Returns 0 when stored, non-zero
        (1 wrong shape, 2 non-finite, 3 not numeric) when the server refuses the vector.

        ``if_match``: store only if the server is still at that version (else WeightsConflict).
        """
        return self._client._send(self._calls.set_weights(w, if_match, self._set_version))

    def versions(self) -> dict:
        """The versions stored on the server: ``{"served": v, "versions": [{"version",
        "stored_at"}, ...]}``, oldest first (the server keeps the last few)."""
        return self._client._send(self._calls.versions())

    def restore(self, version: int, if_match: int | None = None) -> int:
        """Serve stored ``version`` again; it is stored as a new version, whose number is
        returned (and kept in ``self.version``). ``if_match`` as in ``set_weights``."""
        return self._client._send(self._calls.restore(version, if_match, self._set_version))

    def evaluate(self, x: Any, w: Any = None) -> np.ndarray:
        """y = F(x, w), (n, k)."""
        return self._client._send(self._calls.evaluate(x, w))

    def forward_derivative(self, w: Any, dw: Any, x: Any, dx: Any = None) -> np.ndarray:
        """Forward mode: dy = ∂y/∂w·dw + ∂y/∂x·dx at (w, x), (n, k). ``dx=None``: inputs fixed;
        ``dw=None``: weights fixed. ``w`` is only the evaluation point; the stored weights do
        not change. dw (p, r) and/or dx (n, m, r): r directions at once, dy (n, k, r)."""
        return self._client._send(self._calls.forward_derivative(w, dw, x, dx))

    def gradient(self, w: Any, x: Any, py: Any) -> tuple[np.ndarray, np.ndarray]:
        """Reverse mode: (pw (p, 1), px (n, m)) = (pyᵀ·∂y/∂w, pyᵀ·∂y/∂x) at (w, x).
        py (n, k, r): r perturbations at once, pw (p, 1, r) and px (n, m, r)."""
        return self._client._send(self._calls.gradient(w, x, py))

    def hessian_vector(self, w: Any, x: Any, py: Any, dw: Any = None,
                       dx: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """The Hessian of <py, F(w, x)> applied to (dw, dx): (hw (p, 1), hx (n, m)). A None
        direction is zero (one is needed)."""
        return self._client._send(self._calls.hessian_vector(w, x, py, dw, dx))

    def jacobian(self, w: Any, x: Any, wrt: str = "x") -> np.ndarray:
        """Each row's full Jacobian: ∂y_i/∂x_i (n, k, m) for ``wrt="x"``, ∂y_i/∂w (n, k, p) for
        ``wrt="w"``. The server refuses (PayloadTooLarge) an answer over its size limit."""
        return self._client._send(self._calls.jacobian(w, x, wrt))

    def __repr__(self) -> str:
        return f"Model({self._client.config.base_url!r}, name={self.name!r})"


class Client:
    """A connection pool to one gradserve server. The constructor does no I/O.

    ``encoding``: "binary" (default; lossless and fast) or "json". ``retries``: how many times a
    compute call or a read is sent again after a connection error or a 503 (with backoff,
    honouring Retry-After). ``api_key`` defaults to ``$GRADSERVE_API_KEY``. ``transport``: an
    httpx transport, e.g. ``httpx.ASGITransport(app)`` in tests.

    Calls to a plain ``http://`` URL with no proxy set in the environment go through lean
    keep-alive connections of the standard library (0.3-0.6 ms less client time per call than httpx
    at n <= 64); https, credentials in the URL, proxies and a given ``transport`` go through
    httpx.
    """

    def __init__(self, base_url: str = "http://127.0.0.1:8000", api_key: str | None = None, *,
                 timeout: float = DEFAULT_TIMEOUT, retries: int = 3, encoding: str = "binary",
                 transport: httpx.BaseTransport | None = None):
        self.config = ClientConfig.make(base_url, api_key, timeout=timeout, retries=retries,
                                        encoding=encoding)
        self._http: httpx.Client | None = None
        self._pool: ConnectionPool | None = None
        if transport is None and usable(self.config.base_url):
            self._pool = ConnectionPool(self.config.base_url, self.config.headers(), timeout)
            self._request: Request = self._pool.request
        else:
            self._http = httpx.Client(base_url=self.config.base_url,
                                      headers=self.config.headers(), timeout=timeout,
                                      transport=transport)
            self._request = self._via_httpx

    def _via_httpx(self, method: str, path: str, content: bytes | None,
                   headers: dict[str, str]) -> Answer:
        return Answer.of(self._http.request(method, self.config.url(path), content=content,
                                            headers=headers))

    def model(self, name: str | None = None) -> Model:
        """A handle on model ``name`` (None: the server's default model). No I/O."""
        return Model(self, name)

    def models(self) -> list[dict]:
        """Metadata of every model on the server."""
        return self._send(Call("GET", "/models", lambda doc: doc["models"]))

    def _send(self, call: Call) -> Any:
        return _send(self._request, self.config, call)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
        if self._http is not None:
            self._http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
