"""A socket server that acts out scripted HTTP answers, for the clients' connection tests."""

from __future__ import annotations

import json
import socket
import threading

ANSWER = json.dumps({"y": [[1.0]]}).encode()


class StubServer:
    """A socket server acting out ``script(connection, request) -> reply``: bytes to send,
    ``(bytes, "close")`` to send them and close, None to close the connection without answering,
    or "hang" to never answer."""

    def __init__(self, script):
        self.script = script
        self.requests: list[tuple[int, bytes, bytes]] = []  # (connection, head, body)
        self.connections = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            index = self.connections
            self.connections += 1
            thread = threading.Thread(target=self._serve, args=(conn, index), daemon=True)
            self._threads.append(thread)  # before it answers: a test may wait on it after that
            thread.start()

    def _serve(self, conn: socket.socket, index: int):
        reader = conn.makefile("rb")
        with conn:
            while not self._stop.is_set():
                head = b""
                while not head.endswith(b"\r\n\r\n"):
                    line = reader.readline()
                    if not line:
                        return
                    head += line
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                body = reader.read(length)
                self.requests.append((index, head, body))
                reply = self.script(index, len(self.requests) - 1)
                if reply == "hang":
                    self._stop.wait(10)
                    return
                if reply is None:
                    return
                if isinstance(reply, tuple):
                    conn.sendall(reply[0])
                    return
                conn.sendall(reply)

    def close(self):
        self._stop.set()
        self.listener.close()


def ok(body: bytes = ANSWER, extra: str = "") -> bytes:
    return (f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}"
            f"\r\n{extra}\r\n").encode() + body


CHUNKED = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n"
           b"Connection: close\r\n\r\n" + f"{len(ANSWER):x}\r\n".encode() + ANSWER
           + b"\r\n0\r\n\r\n")


def check_evaluates_on_one_connection(stub: StubServer, calls: int) -> None:
    """``calls`` evaluates of x = ones((1, 2)) with the key "k" on model "m", all on one
    kept-alive connection: the request line, the headers every request carries, the JSON body."""
    assert stub.connections == 1 and len(stub.requests) == calls
    head = stub.requests[0][1].decode()
    assert head.startswith("POST /models/m/evaluate HTTP/1.1\r\n")
    assert "\r\nAuthorization: Bearer k\r\n" in head
    assert "\r\nUser-Agent: gradserve-client\r\n" in head
    assert json.loads(stub.requests[0][2]) == {"x": [[1.0, 1.0]]}
