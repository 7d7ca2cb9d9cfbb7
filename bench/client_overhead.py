"""What the Python client adds to a call, against a raw socket sending prebuilt bytes.

Starts gradserve on the benchmark's model (the peers' 8-64-64-2 MLP) and times, in interleaved
rounds, one call through: a raw keep-alive socket with the request bytes built in advance (the
floor: the server and loopback alone), the client as it is by default (standard-library
connections for plain http), and the same client forced through httpx. Prints medians over rounds
and each path's overhead over the floor (the benchmark's own timing loop and interleaving).

    python bench/client_overhead.py [--rounds 7] [--calls 300] [--work DIR]
"""

from __future__ import annotations

import argparse
import socket
import sys
import tempfile
from pathlib import Path

import httpx
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "client")]

import measure  # noqa: E402
import run  # noqa: E402
import servers  # noqa: E402
from gradserve_client import Client  # noqa: E402
from timing import time_calls  # noqa: E402


def raw_socket(url: str, path: str, body: bytes):
    """One call over a kept-alive socket, request prebuilt, answer read by Content-Length."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    reader = sock.makefile("rb")
    message = (f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: {measure.BINARY}\r\n"
               f"Accept: {measure.BINARY}\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body

    def call():
        sock.sendall(message)
        length = 0
        while (line := reader.readline()) != b"\r\n":
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        reader.read(length)

    return call


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=300,
                        help="timed calls per path and round (a tenth at n = 4096)")
    parser.add_argument("--work", type=Path,
                        default=Path(tempfile.gettempdir()) / "gradserve-bench")
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    server = servers.gradserve(run.build_repository(args.work), args.work, batching=True,
                               label="client-overhead").start()
    try:
        server.wait_ready()
        w = np.asarray(run.peer_model.flat_weights())
        with Client(server.url) as lean, \
                Client(server.url, transport=httpx.HTTPTransport()) as through_httpx:
            assert lean._pool is not None and through_httpx._pool is None
            print("| call | n | raw socket (floor) | client, default | client through httpx | "
                  "default over floor | httpx over floor |")
            print("|---|---|---|---|---|---|---|")
            for method in ("evaluate", "gradient"):
                for n in (1, 64, 4096):
                    a = measure.arrays(method, n, w)
                    path, _, _, body = measure.ours(method, n, "binary", w)
                    calls = args.calls if n <= 64 else max(args.calls // 10, 5)
                    paths = {"floor": raw_socket(server.url, path, body),
                             "default": measure.method_call(lean.model("mlp"), method, a),
                             "httpx": measure.method_call(through_httpx.model("mlp"), method, a)}
                    res = run.interleaved(args.rounds, {
                        name: lambda fn=fn: time_calls(fn, calls) for name, fn in paths.items()})
                    m = {name: r["median_ms"] for name, r in res.items()}
                    print(f"| {method} | {n} | {m['floor']:.3f} ms | {m['default']:.3f} ms | "
                          f"{m['httpx']:.3f} ms | +{(m['default'] - m['floor']) * 1e3:.0f} µs | "
                          f"+{(m['httpx'] - m['floor']) * 1e3:.0f} µs |")
    finally:
        server.stop()
    print(f"\n(median call over {args.rounds} interleaved rounds of {args.calls} calls, a tenth "
          "at n = 4096; binary encoding; one connection)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
