"""Keep-alive HTTP/1.1 connections over asyncio streams, for the async client's plain HTTP.

The async client's users overlap many calls, so what each call costs the client's one thread
bounds them: through httpx, 0.8 ms of client CPU per call on its own and 1.4 ms with 16 calls in
flight, which caps a client at ~500-700 calls a second against a server that answers thousands
(BENCHMARKS.md). This is the sync client's lean path (``_connections``) for asyncio: the same
requests, answers read whole, and httpx's transport errors, so retries and error mapping are
shared. It takes the same cases (plain ``http://``, no proxy in the environment); the others go
through httpx.

The answer is parsed here, since the standard library has no asyncio HTTP client: a status line,
headers (``http.client.parse_headers``), and a body framed by Content-Length, chunked
transfer coding, or the end of the connection.
"""

from __future__ import annotations

import asyncio
import http.client
import io

import httpx

from ._connections import Answer, Server, StaleConnection

__all__ = ["AsyncConnectionPool"]

_READ = 1 << 20  # most bytes one read takes from the stream (and the stream's buffer limit)


class _Connection:
    __slots__ = ("reader", "writer", "loop")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 loop: asyncio.AbstractEventLoop):
        self.reader, self.writer, self.loop = reader, writer, loop

    def close(self) -> None:
        try:
            self.writer.close()
        except RuntimeError:  # its event loop is closed: the socket went with it
            pass


class AsyncConnectionPool:
    """Keep-alive connections to one server, each used by one call at a time.

    At most ``max_connections`` calls use a connection at once (as httpx's default pool); the
    others wait for one, for at most ``timeout`` seconds (``httpx.PoolTimeout``). Connections
    belong to the event loop that opened them: one made under another loop is not reused.
    """

    def __init__(self, base_url: str, headers: dict[str, str], timeout: float,
                 max_connections: int = 100):
        self.server = Server(base_url, headers)
        self.timeout = timeout
        self.max_connections = max_connections
        self._idle: list[_Connection] = []
        self._slots: asyncio.Semaphore | None = None
        self._slots_loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    async def request(self, method: str, path: str, content: bytes | None,
                      headers: dict[str, str]) -> Answer:
        url, message = self.server.message(method, path, content, headers)
        slots = self._slots_of_this_loop()
        try:
            async with asyncio.timeout(self.timeout):
                await slots.acquire()
        except TimeoutError:
            raise httpx.PoolTimeout(f"{url}: no connection free within {self.timeout} s "
                                    f"({self.max_connections} in use)") from None
        try:
            return await self._request(method, message, url)
        finally:
            slots.release()

    async def _request(self, method: str, message: list[bytes], url: str) -> Answer:
        conn, reused = await self._checkout(url)
        try:
            try:
                return await self._exchange(conn, method, message, url)
            except StaleConnection:
                if not reused:
                    raise StaleConnection.error(url) from None
            # As in the sync pool: a kept-alive connection the server closed as it was reused;
            # nothing was read, so the request goes once more on a new connection.
            conn.close()
            conn = await self._connect(url)
            try:
                return await self._exchange(conn, method, message, url)
            except StaleConnection:
                raise StaleConnection.error(url) from None
        except BaseException:  # a cancelled call included: its connection is half used
            conn.close()
            raise

    async def _exchange(self, conn: _Connection, method: str, message: list[bytes],
                        url: str) -> Answer:
        reader, writer = conn.reader, conn.writer
        try:
            writer.writelines(message)
            async with asyncio.timeout(self.timeout):
                await writer.drain()
        except TimeoutError:
            raise httpx.WriteTimeout(f"{url}: could not send the request within "
                                     f"{self.timeout} s") from None
        except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError):
            raise StaleConnection from None
        except OSError as exc:
            raise httpx.WriteError(f"{url}: {type(exc).__name__}: {exc}") from None
        try:
            async with asyncio.timeout(self.timeout):
                status, headers, closes = await _read_head(reader, url)
        except TimeoutError:
            raise httpx.ReadTimeout(f"{url}: no answer within {self.timeout} s") from None
        try:
            content, until_closed = await self._read_body(reader, method, status, headers, url)
        except TimeoutError:
            raise httpx.ReadTimeout(f"{url}: the answer stalled for {self.timeout} s") from None
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError,
                ValueError) as exc:
            raise httpx.ReadError(f"{url}: the answer broke off ({type(exc).__name__}: "
                                  f"{exc})") from None
        if closes or until_closed:
            conn.close()
        else:
            self._checkin(conn)
        return Answer(status, headers, content, url)

    async def _read_body(self, reader: asyncio.StreamReader, method: str, status: int,
                         headers, url: str) -> tuple[bytes, bool]:
        """(the body, whether it ran to the end of the connection)."""
        if method == "HEAD" or status in (204, 304):
            return b"", False
        if "chunked" in headers.get("transfer-encoding", "").lower():
            return await self._read_chunks(reader), False
        length = headers.get("content-length")
        if length is None:
            return await self._read(reader, None), True
        if not length.strip().isdigit():
            raise httpx.RemoteProtocolError(f"{url}: bad Content-Length {length!r}")
        return await self._read(reader, int(length)), False

    async def _read(self, reader: asyncio.StreamReader, size: int | None) -> bytes:
        """``size`` bytes (None: up to the end of the connection), each read within the
        timeout: a slow but steady answer is not cut off, a stalled one is."""
        parts = []
        while size is None or size > 0:
            async with asyncio.timeout(self.timeout):
                part = await reader.read(_READ if size is None else min(size, _READ))
            if not part:
                if size is None:
                    break
                raise asyncio.IncompleteReadError(b"".join(parts), None)
            parts.append(part)
            if size is not None:
                size -= len(part)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    async def _read_chunks(self, reader: asyncio.StreamReader) -> bytes:
        parts = []
        while True:
            async with asyncio.timeout(self.timeout):
                line = await reader.readuntil(b"\r\n")
            size = int(line.split(b";", 1)[0], 16)  # ValueError: not a chunk size
            if size == 0:
                while True:  # trailers, up to the empty line
                    async with asyncio.timeout(self.timeout):
                        if await reader.readuntil(b"\r\n") == b"\r\n":
                            return b"".join(parts)
            parts.append(await self._read(reader, size))
            async with asyncio.timeout(self.timeout):
                if await reader.readexactly(2) != b"\r\n":
                    raise ValueError("a chunk does not end with CRLF")

    def _slots_of_this_loop(self) -> asyncio.Semaphore:
        if self._closed:
            raise RuntimeError("the client is closed")
        loop = asyncio.get_running_loop()
        if self._slots is None or self._slots_loop is not loop:
            # A semaphore (and a connection) works in the loop it first served; under a new
            # loop (another asyncio.run), start afresh.
            self._slots, self._slots_loop = asyncio.Semaphore(self.max_connections), loop
        return self._slots

    async def _checkout(self, url: str) -> tuple[_Connection, bool]:
        loop = asyncio.get_running_loop()
        while self._idle:
            conn = self._idle.pop()
            if conn.loop is loop and not conn.reader.at_eof() and not conn.writer.is_closing():
                return conn, True
            conn.close()  # the server closed it while idle, or another loop opened it
        return await self._connect(url), False

    def _checkin(self, conn: _Connection) -> None:
        if not self._closed and len(self._idle) < self.max_connections:
            self._idle.append(conn)
        else:
            conn.close()

    async def _connect(self, url: str) -> _Connection:
        try:
            async with asyncio.timeout(self.timeout):
                reader, writer = await asyncio.open_connection(
                    self.server.host, self.server.port, limit=_READ)
        except TimeoutError:
            raise httpx.ConnectTimeout(
                f"{url}: could not connect within {self.timeout} s") from None
        except OSError as exc:
            raise httpx.ConnectError(f"{url}: {exc.strerror or exc}") from None
        return _Connection(reader, writer, asyncio.get_running_loop())

    async def aclose(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


async def _read_head(reader: asyncio.StreamReader, url: str):
    """(status, headers, whether the server closes the connection after this answer), past
    any 1xx interim answer."""
    while True:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            if not exc.partial:
                raise StaleConnection from None  # closed before the first byte of the answer
            raise httpx.RemoteProtocolError(f"{url}: the answer broke off in its head") from None
        except asyncio.LimitOverrunError:
            raise httpx.RemoteProtocolError(f"{url}: the answer's head is over "
                                            f"{_READ} bytes") from None
        except (ConnectionResetError, ConnectionAbortedError):
            raise StaleConnection from None
        except OSError as exc:
            raise httpx.RemoteProtocolError(f"{url}: {type(exc).__name__}: {exc}") from None
        status_line, _, rest = head.partition(b"\r\n")
        version, _, tail = status_line.partition(b" ")
        code = tail[:3]
        if not version.startswith(b"HTTP/1.") or not code.isdigit():
            raise httpx.RemoteProtocolError(f"{url}: not an HTTP/1.x answer: {status_line[:80]!r}")
        status = int(code)
        if status >= 200:
            headers = http.client.parse_headers(io.BytesIO(rest))
            tokens = ",".join(headers.get_all("connection") or ()).lower()
            # An HTTP/1.0 answer ends its connection unless it says keep-alive.
            closes = "close" in tokens or (version == b"HTTP/1.0" and "keep-alive" not in tokens)
            return status, headers, closes
