"""What the Python clients add to a call, against a raw socket sending prebuilt bytes.

Starts gradserve on the benchmark's model (the peers' 8-64-64-2 MLP) and times, in interleaved
rounds, one call through: a raw keep-alive socket with the request bytes built in advance (the
floor: the server and loopback alone), the client as it is by default (standard-library
connections for plain http), the same client forced through httpx, and the async client both
ways (each call awaited alone on an asyncio loop). Prints medians over rounds and each path's
overhead over the floor (the benchmark's own timing loop and interleaving). Then the async
client with 16 calls in flight, both ways: calls per second and the client's CPU per call.

    python bench/client_overhead.py [--rounds 7] [--calls 300] [--work DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "client")]

import measure  # noqa: E402
import run  # noqa: E402
import servers  # noqa: E402
from gradserve_client import AsyncClient, Client  # noqa: E402
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


def in_flight(loop: asyncio.AbstractEventLoop, fn, calls: int, width: int = 16) -> dict:
    """``calls`` awaited calls of ``fn``, ``width`` at a time: calls/s and client CPU per call."""
    async def workers(count):
        async def worker():
            for _ in range(count):
                await fn()
        await asyncio.gather(*(worker() for _ in range(width)))

    count = calls // width
    cpu, start = time.process_time(), time.perf_counter()
    loop.run_until_complete(workers(count))
    wall, n = time.perf_counter() - start, count * width
    return {"median_ms": wall / count * 1e3, "p99_ms": 0.0, "count": n, "rps": n / wall,
            "errors": 0, "cpu_us": (time.process_time() - cpu) / n * 1e6}


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
        loop = asyncio.new_event_loop()
        with Client(server.url) as lean, \
                Client(server.url, transport=httpx.HTTPTransport()) as through_httpx:
            clients = {"async": AsyncClient(server.url),
                       "async httpx": AsyncClient(server.url, transport=httpx.AsyncHTTPTransport())}
            assert lean._pool is not None and through_httpx._pool is None
            assert clients["async"]._pool is not None and clients["async httpx"]._pool is None
            names = ["default", "httpx", "async", "async httpx"]
            print("| call | n | raw socket (floor) | " + " | ".join(
                f"client, {name}" for name in names) + " | " + " | ".join(
                f"{name} over floor" for name in names) + " |")
            print("|---|---|---|" + "---|" * 2 * len(names))
            for method in ("evaluate", "gradient"):
                for n in (1, 64, 4096):
                    a = measure.arrays(method, n, w)
                    path, _, _, body = measure.ours(method, n, "binary", w)
                    calls = args.calls if n <= 64 else max(args.calls // 10, 5)
                    paths = {"floor": raw_socket(server.url, path, body),
                             "default": measure.method_call(lean.model("mlp"), method, a),
                             "httpx": measure.method_call(through_httpx.model("mlp"), method, a)}
                    for name, client in clients.items():
                        call = measure.method_call(client.model("mlp"), method, a)
                        paths[name] = lambda call=call: loop.run_until_complete(call())
                    res = run.interleaved(args.rounds, {
                        name: lambda fn=fn: time_calls(fn, calls) for name, fn in paths.items()})
                    m = {name: r["median_ms"] for name, r in res.items()}
                    print(f"| {method} | {n} | {m['floor']:.3f} ms | " + " | ".join(
                        f"{m[name]:.3f} ms" for name in names) + " | " + " | ".join(
                        f"{(m[name] - m['floor']) * 1e3:+.0f} µs" for name in names) + " |")
            print(f"\n(median call over {args.rounds} interleaved rounds of {args.calls} calls, a "
                  "tenth at n = 4096; binary encoding; one connection)\n")
            print("| async client, 16 calls in flight | n | default: calls/s | default: client "
                  "CPU per call | through httpx: calls/s | through httpx: client CPU per call |")
            print("|---|---|---|---|---|---|")
            for n in (1, 64):
                a = measure.arrays("gradient", n, w)
                res = run.interleaved(args.rounds, {
                    name: lambda call=measure.method_call(client.model("mlp"), "gradient", a):
                    in_flight(loop, call, args.calls * 4) for name, client in clients.items()})
                d, h = res["async"], res["async httpx"]
                print(f"| gradient | {n} | {d['rps']:.0f} | {d['cpu_us']:.0f} µs | {h['rps']:.0f} "
                      f"| {h['cpu_us']:.0f} µs |")
            for client in clients.values():
                loop.run_until_complete(client.aclose())
    finally:
        server.stop()
    print(f"\n({args.rounds} interleaved rounds of {args.calls * 4} calls; the client's CPU "
          "time, all its threads, per call)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
