"""The asynchronous client: the same methods as ``Client``, awaitable."""

from __future__ import annotations

import asyncio
import sys
from typing import Any, Awaitable, Callable

import httpx
import numpy as np

from ._async_connections import AsyncConnectionPool
from ._base import (DEFAULT_TIMEOUT, Call, ClientConfig, ModelCalls, error_of, should_retry,
                    transport_error)
from ._connections import Answer, usable

Request = Callable[[str, str, "bytes | None", "dict[str, str]"], Awaitable[Answer]]

__all__ = ["AsyncClient", "AsyncModel"]


async def _send(request: Request, config: ClientConfig, call: Call) -> Any:
    if call.local:
        return call.decode({})
    attempt = 0
    while True:
        try:
            response = await request(call.method, call.path, call.content, call.headers)
        except httpx.TransportError as exc:
            error = transport_error(config, call, exc)
        else:
            if not should_retry(config, call, response, attempt):
                return call.read(response)
            error = error_of(response)
        if not call.retry or attempt >= config.retries:
            raise error from None
        attempt += 1
        await asyncio.sleep(config.delay(attempt, error))


class AsyncModel:
    """``Model``'s methods as coroutines; see ``gradserve_client.Model`` for shapes."""

    def __init__(self, client: "AsyncClient", name: str | None):
        self._client = client
        self._calls = ModelCalls(client.config, name)
        self.name = name
        self.version: int | None = None
        self._info: dict | None = None

    def _set_version(self, version: int) -> None:
        self.version = version

    async def info(self) -> dict:
        if self._info is None:
            self._info = await self._client._send(self._calls.info())
        return self._info

    async def get_weights(self) -> np.ndarray:
        return await self._client._send(self._calls.get_weights(self._set_version))

    async def set_weights(self, w: Any, if_match: int | None = None) -> int:
        return await self._client._send(self._calls.set_weights(w, if_match, self._set_version))

    async def versions(self) -> dict:
        return await self._client._send(self._calls.versions())

    async def restore(self, version: int, if_match: int | None = None) -> int:
        return await self._client._send(self._calls.restore(version, if_match, self._set_version))

    async def evaluate(self, x: Any, w: Any = None) -> np.ndarray:
        return await self._client._send(self._calls.evaluate(x, w))

    async def forward_derivative(self, w: Any, dw: Any, x: Any, dx: Any = None) -> np.ndarray:
        return await self._client._send(self._calls.forward_derivative(w, dw, x, dx))

    async def gradient(self, w: Any, x: Any, py: Any) -> tuple[np.ndarray, np.ndarray]:
        return await self._client._send(self._calls.gradient(w, x, py))

    async def hessian_vector(self, w: Any, x: Any, py: Any, dw: Any = None,
                             dx: Any = None) -> tuple[np.ndarray, np.ndarray]:
        return await self._client._send(self._calls.hessian_vector(w, x, py, dw, dx))

    async def jacobian(self, w: Any, x: Any, wrt: str = "x") -> np.ndarray:
        return await self._client._send(self._calls.jacobian(w, x, wrt))


class AsyncClient:
    """``Client`` for asyncio code: same arguments, awaitable methods, ``async with``.

    As ``Client``, calls to a plain ``http://`` URL with no proxy set in the environment go
    through lean keep-alive connections (asyncio streams; Python 3.11 or later), at most 100 at
    once; https, credentials in the URL, proxies and a given ``transport`` go through httpx.
    """

    def __init__(self, base_url: str = "http://127.0.0.1:8000", api_key: str | None = None, *,
                 timeout: float = DEFAULT_TIMEOUT, retries: int = 3, encoding: str = "binary",
                 transport: httpx.AsyncBaseTransport | None = None):
        self.config = ClientConfig.make(base_url, api_key, timeout=timeout, retries=retries,
                                        encoding=encoding)
        self._http: httpx.AsyncClient | None = None
        self._pool: AsyncConnectionPool | None = None
        # asyncio.timeout, which the lean path reads every answer within, is new in 3.11.
        if transport is None and sys.version_info >= (3, 11) and usable(self.config.base_url):
            self._pool = AsyncConnectionPool(self.config.base_url, self.config.headers(), timeout)
            self._request: Request = self._pool.request
        else:
            self._http = httpx.AsyncClient(base_url=self.config.base_url,
                                           headers=self.config.headers(), timeout=timeout,
                                           transport=transport)
            self._request = self._via_httpx

    async def _via_httpx(self, method: str, path: str, content: bytes | None,
                         headers: dict[str, str]) -> Answer:
        return Answer.of(await self._http.request(method, self.config.url(path), content=content,
                                                  headers=headers))

    def model(self, name: str | None = None) -> AsyncModel:
        return AsyncModel(self, name)

    async def models(self) -> list[dict]:
        return await self._send(Call("GET", "/models", lambda doc: doc["models"]))

    async def _send(self, call: Call) -> Any:
        return await _send(self._request, self.config, call)

    async def aclose(self) -> None:
        if self._pool is not None:
            await self._pool.aclose()
        if self._http is not None:
            await self._http.aclose()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
