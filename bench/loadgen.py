"""A small closed-loop HTTP/1.1 load generator, for machines without wrk.

    python loadgen.py HOST PORT CONNECTIONS SECONDS METHOD PATH CONTENT_TYPE ACCEPT [BODY_FILE ...]

The same arguments and the same one-line JSON answer as ``wrk.lua``: each connection keeps one
request in flight, sending the prebuilt requests in rotation, and every latency is recorded.
Requests are built once, answers are read by Content-Length and never parsed, so one process
sustains tens of thousands of small requests per second (wrk does several times that: the table
says which generator measured it).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import numpy as np


def build(host: str, method: str, path: str, ctype: str, accept: str, files: list[str]) -> list[bytes]:
    head = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\n"
    if accept != "-":
        head += f"Accept: {accept}\r\n"
    if ctype == "-":
        return [(head + "\r\n").encode()]
    out = []
    for name in files:
        with open(name, "rb") as f:
            body = f.read()
        out.append((head + f"Content-Type: {ctype}\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body)
    return out


async def connection(host, port, requests, offset, stop_at, latencies, errors):
    reader, writer = await asyncio.open_connection(host, port)
    i = offset
    try:
        while time.perf_counter() < stop_at:
            request = requests[i % len(requests)]
            i += 1
            t0 = time.perf_counter()
            writer.write(request)
            status = await reader.readline()
            length = 0
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - t0)
            if status.split(b" ", 2)[1] != b"200":
                errors[0] += 1
    finally:
        writer.close()


async def main(argv: list[str]) -> None:
    host, port, conns, seconds = argv[0], int(argv[1]), int(argv[2]), float(argv[3])
    requests = build(host, argv[4], argv[5], argv[6], argv[7], argv[8:])
    latencies: list[float] = []
    errors = [0]
    start = time.perf_counter()
    await asyncio.gather(*(connection(host, port, requests, c, start + seconds, latencies, errors)
                           for c in range(conns)))
    duration = time.perf_counter() - start
    a = np.asarray(latencies or [float("nan")]) * 1e6
    print(json.dumps({"requests": len(latencies), "duration_s": duration, "errors": errors[0],
                      "p50_us": float(np.median(a)), "p99_us": float(np.percentile(a, 99)),
                      "mean_us": float(a.mean()), "max_us": float(a.max())}))


if __name__ == "__main__":
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main(sys.argv[1:]))
