"""What worker processes add on this host: gradserve served by 1 and by N workers
(``gradserve serve --workers N``; by default 1 and the number of cores), batching on and off,
loaded side by side by wrk (else bench/loadgen.py). Prints a Markdown table of requests/s, with
each figure's ratio to the fewest workers with batching on.

    python bench/workers.py [--workers 1 2 ...] [--rounds 6] [--seconds 3] [--work DIR]

The model, the request bodies and the load are those of ``bench/run.py``'s throughput cells
(gradient, binary; 64 distinct w at n = 1, one w at n = 64). Every server runs at once and each
round loads each of them in turn, so a burst from elsewhere on the machine hits them all alike;
a figure is requests/s over all rounds, and its median and p99 the median round's. CPU is the
server's, all its processes and threads.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # the servers share the device
HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "service"), str(HERE.parent / "client")]

import measure  # noqa: E402
import peer_model  # noqa: E402
import report  # noqa: E402
import servers  # noqa: E402
from run import build_repository, interleaved, load_average  # noqa: E402

CELLS = [  # label, rows, connections, distinct w
    ("n = 1, 1 connection, distinct w", 1, 1, True),
    ("n = 1, 16 connections, distinct w", 1, 16, True),
    ("n = 1, 64 connections, distinct w", 1, 64, True),
    ("n = 64, 16 connections, same w", 64, 16, False),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, os.cpu_count() or 1],
                        help="worker counts to compare (default: 1 and the number of cores)")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=int, default=3, help="seconds per load run")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "gradserve-bench",
                        help="scratch folder: model repository, logs")
    args = parser.parse_args(argv)
    counts = sorted(set(args.workers))
    if counts[0] < 1:
        parser.error("--workers: each count must be at least 1")
    started = time.perf_counter()
    args.work.mkdir(parents=True, exist_ok=True)
    load = measure.Load(args.work)
    repo = build_repository(args.work)
    before = load_average()
    w = peer_model.flat_weights()  # the repository's model holds these (build_repository checks)
    distinct = measure.distinct_w(w)
    contenders: dict[str, servers.Server] = {}
    results = {}
    try:
        for count in counts:
            for batching in (True, False):
                label = f"{count} worker{'s' if count > 1 else ''}, batching {'on' if batching else 'off'}"
                contenders[label] = servers.gradserve(
                    repo, args.work, batching=batching, workers=count,
                    label=f"workers-{count}-{'on' if batching else 'off'}").start()
        for server in contenders.values():
            server.wait_ready()
        for cell, rows, connections, spread in CELLS:
            bodies = distinct if spread else [measure.ours("gradient", rows, "binary", w)]
            for server in contenders.values():  # one unmeasured second: connections and caches
                load.run(server.url, bodies, connections, 1)
            results[cell] = interleaved(args.rounds, {
                label: (lambda s=server: load.run(s.url, bodies, connections, args.seconds, pid=s.pid))
                for label, server in contenders.items()})
            print(f"[{time.perf_counter() - started:6.1f} s] {cell}: "
                  + ", ".join(f"{k} {v['rps']:.0f}/s" for k, v in results[cell].items()),
                  file=sys.stderr, flush=True)
    finally:
        for server in contenders.values():
            server.stop()

    base = next(iter(contenders))  # the fewest workers, batching on
    labels = list(contenders)
    print(f"Machine: {os.cpu_count()} cores; load generator: {load.name}; load average before/after: "
          f"{before} / {load_average()}; {args.rounds} interleaved rounds of {args.seconds} s.\n")
    print("Requests/s (median / p99 ms; server CPU per request, all processes), × = over "
          f"{base}:\n")
    print("| cell | " + " | ".join(labels) + " |")
    print("|---|" + "---|" * len(labels))
    for cell, res in results.items():
        cells = [f"{report.rps_cell(res[k])}, {res[k]['rps'] / res[base]['rps']:.2f}×" for k in labels]
        print(f"| {cell} | " + " | ".join(cells) + " |")
    command = " ".join(["python bench/workers.py", *(argv if argv is not None else sys.argv[1:])])
    print(f"\nCommand: `{command}`; the run took {time.perf_counter() - started:.0f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
