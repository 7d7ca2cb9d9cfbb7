"""Keep-alive HTTP/1.1 connections of the standard library, for the sync client's plain HTTP.

An optimisation loop calls the service thousands of times from one thread, so what the client
spends per call matters as much as the server: over a raw socket, httpx (URL and header models,
httpcore, h11) adds 0.45-0.85 ms per call at n <= 64 here, this path 0.15-0.3 ms with the encoding
and decoding (``python bench/client_overhead.py``). It covers what such a loop needs and nothing
else: plain ``http://`` to a server without a proxy in between, head and body handed to the socket
in one system call, answers read whole and parsed by ``http.client``. Everything else (https,
proxies from the environment, a caller's own httpx transport) goes through httpx. The async
client's counterpart, over asyncio streams, is ``_async_connections``.

Errors are raised as httpx's transport errors, so both paths share one retry and error mapping.
"""

from __future__ import annotations

import http.client
import os
import select
import socket
import threading
import urllib.request
from urllib.parse import urlsplit

import httpx

__all__ = ["Answer", "ConnectionPool", "Server", "StaleConnection", "usable"]


class Answer:
    """What the client reads of an HTTP answer, from either path."""

    __slots__ = ("status_code", "headers", "content", "url")

    def __init__(self, status_code: int, headers, content: bytes, url: str):
        self.status_code = status_code
        self.headers = headers  # case-insensitive .get(name)
        self.content = content
        self.url = url

    @classmethod
    def of(cls, response: httpx.Response) -> "Answer":
        return cls(response.status_code, response.headers, response.content, str(response.url))


def usable(base_url: str) -> bool:
    """Whether calls to ``base_url`` can take this path: plain HTTP without credentials in the
    URL, and no proxy configured for its host in the environment (httpx would honour both; this
    path does not)."""
    parts = urlsplit(base_url)
    if parts.scheme != "http" or not parts.hostname or parts.username is not None:
        return False
    proxies = urllib.request.getproxies()
    if not (proxies.get("http") or proxies.get("all")):
        return True
    return bool(urllib.request.proxy_bypass(parts.hostname))


class Server:
    """Where requests go (a plain ``http://`` base URL) and what each carries."""

    def __init__(self, base_url: str, headers: dict[str, str]):
        parts = urlsplit(base_url)
        self.headers = dict(headers)  # sent with every request
        self.host = parts.hostname
        self.port = parts.port or 80
        self.prefix = parts.path.rstrip("/")  # a server mounted below a path
        self.authority = parts.netloc

    def message(self, method: str, path: str, content: bytes | None,
                headers: dict[str, str]) -> tuple[str, list[bytes]]:
        """(the URL, for errors; the request as head and body, to be sent one after the other)."""
        url = f"http://{self.authority}{self.prefix}{path}"
        head = [f"{method} {self.prefix}{path} HTTP/1.1", f"Host: {self.authority}"]
        head += [f"{name}: {value}" for name, value in {**self.headers, **headers}.items()]
        if content is not None or method in ("POST", "PUT"):
            head.append(f"Content-Length: {len(content or b'')}")
        return url, [("\r\n".join(head) + "\r\n\r\n").encode("latin-1"), content or b""]


class ConnectionPool:
    """Idle keep-alive connections to one server, each used by one call at a time (thread-safe)."""

    def __init__(self, base_url: str, headers: dict[str, str], timeout: float,
                 max_idle: int = 16):
        self.server = Server(base_url, headers)
        self.timeout = timeout
        self.max_idle = max_idle
        self._idle: list[socket.socket] = []
        self._lock = threading.Lock()
        self._closed = False
        self._pid = os.getpid()

    def request(self, method: str, path: str, content: bytes | None,
                headers: dict[str, str]) -> Answer:
        url, message = self.server.message(method, path, content, headers)
        sock, reused = self._checkout(url)
        try:
            try:
                return self._exchange(sock, method, message, url)
            except StaleConnection:
                if not reused:
                    raise StaleConnection.error(url) from None
            # The server closed a kept-alive connection as it was reused (its idle timeout):
            # nothing was read, so the request is sent once more on a new connection.
            sock.close()
            sock = self._connect(url)
            try:
                return self._exchange(sock, method, message, url)
            except StaleConnection:
                raise StaleConnection.error(url) from None
        except BaseException:
            sock.close()
            raise

    def _exchange(self, sock: socket.socket, method: str, message: list[bytes],
                  url: str) -> Answer:
        try:
            _send_all(sock, message)
            response = http.client.HTTPResponse(sock, method=method)
            response.begin()
        except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError):
            # includes http.client.RemoteDisconnected: closed before the status line
            raise StaleConnection from None
        except socket.timeout:
            raise httpx.ReadTimeout(f"{url}: no answer within {self.timeout} s") from None
        except (OSError, http.client.HTTPException) as exc:
            raise httpx.RemoteProtocolError(f"{url}: {type(exc).__name__}: {exc}") from None
        try:
            content = response.read()
        except socket.timeout:
            raise httpx.ReadTimeout(f"{url}: the answer stalled for {self.timeout} s") from None
        except (OSError, http.client.HTTPException) as exc:
            raise httpx.ReadError(f"{url}: the answer broke off ({type(exc).__name__}: "
                                  f"{exc})") from None
        if response.will_close:
            sock.close()
        else:
            self._checkin(sock)
        return Answer(response.status, response.msg, content, url)

    def _checkout(self, url: str) -> tuple[socket.socket, bool]:
        if self._pid != os.getpid():
            # A forked child (multiprocessing's workers): the inherited connections are the
            # parent's; writing to one would mix two processes' answers. Start afresh.
            self._idle, self._lock, self._pid = [], threading.Lock(), os.getpid()
        with self._lock:
            if self._closed:
                raise RuntimeError("the client is closed")
            while self._idle:
                sock = self._idle.pop()
                if not _readable(sock):
                    return sock, True
                sock.close()  # readable while idle: the server closed it (or broke the protocol)
        return self._connect(url), False

    def _checkin(self, sock: socket.socket) -> None:
        with self._lock:
            if not self._closed and len(self._idle) < self.max_idle:
                self._idle.append(sock)
                return
        sock.close()

    def _connect(self, url: str) -> socket.socket:
        try:
            sock = socket.create_connection((self.server.host, self.server.port),
                                            timeout=self.timeout)
        except socket.timeout:
            raise httpx.ConnectTimeout(
                f"{url}: could not connect within {self.timeout} s") from None
        except OSError as exc:
            raise httpx.ConnectError(f"{url}: {exc.strerror or exc}") from None
        # Requests and answers are small and each is written at once: no Nagle delay.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for sock in idle:
            sock.close()


def _readable(sock: socket.socket) -> bool:
    if hasattr(select, "poll"):  # select() refuses descriptors past 1023
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        return bool(poller.poll(0))
    return bool(select.select([sock], [], [], 0)[0])


def _send_all(sock: socket.socket, parts: list[bytes]) -> None:
    """Head and body in one system call where the socket takes them, without joining them
    first (a copy of the whole body)."""
    if not hasattr(sock, "sendmsg"):  # Windows has no sendmsg
        sock.sendall(b"".join(parts))
        return
    views = [memoryview(part) for part in parts if part]
    while views:
        sent = sock.sendmsg(views)
        while views and sent >= len(views[0]):
            sent -= len(views.pop(0))
        if sent:
            views[0] = views[0][sent:]


class StaleConnection(Exception):
    """The connection was closed before any of the answer arrived (both pools: a reused one is
    tried once more on a new connection)."""

    @staticmethod
    def error(url: str) -> httpx.RemoteProtocolError:
        """What the caller hears when it happens on a new connection."""
        return httpx.RemoteProtocolError(f"{url}: the server closed the connection without "
                                         "answering")
