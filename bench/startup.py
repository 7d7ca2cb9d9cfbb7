"""Time from start to ready: ``gradserve serve`` on the demo models, cold and with JAX's
persistent compilation cache warm, medians over a few runs. Prints a Markdown table.

    python bench/startup.py [--runs 5] [--buckets 1,8,64,512,4096] [--models DIR]

"Cold" starts with an empty cache folder (a new container with a new volume); "cached" starts
with the folder a previous start filled (a restarted container). Each run is a new process,
timed from its launch until /readyz answers 200; "loading" is the part the service itself logs
between starting to load and being ready (reading and compiling every model); the rest is the
interpreter, the imports and the server. Cold and cached runs alternate, so a noisy neighbour
weighs on both alike.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "service" / "gradserve" / "demo_models"
_STAMP = r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) INFO gradserve\S*: "


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=1) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _logged_seconds(log: str, first: str, last: str) -> float:
    """Seconds between the service's log lines starting with ``first`` and ``last``."""
    def at(prefix: str) -> datetime:
        match = re.search(_STAMP + re.escape(prefix), log)
        if match is None:
            raise RuntimeError(f"no log line '{prefix}...' in:\n{log}")
        return datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f")
    return (at(last) - at(first)).total_seconds()


def start_to_ready(models: Path, cache: Path, buckets: str, timeout: float = 600) -> tuple[float, float, str]:
    """(seconds from launch to ready, seconds the service spent loading, its device)."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "GRADSERVE_COMPILATION_CACHE": str(cache), "GRADSERVE_BUCKETS": buckets,
           "GRADSERVE_POLL_INTERVAL": "0", "PYTHONPATH": os.pathsep.join(
               [str(ROOT / "service"), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    with tempfile.TemporaryFile("w+") as log:
        start = time.perf_counter()
        process = subprocess.Popen([sys.executable, "-m", "gradserve.cli", "serve", "--models",
                                    str(models), "--port", str(port)], env=env, stdout=log,
                                   stderr=subprocess.STDOUT)
        try:
            while not _ready(url):
                if process.poll() is not None or time.perf_counter() - start > timeout:
                    log.seek(0)
                    raise RuntimeError(f"the server did not get ready:\n{log.read()}")
                time.sleep(0.01)
            elapsed = time.perf_counter() - start
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(60)
        log.seek(0)
        text = log.read()
    device = re.search(r"ready: \d+ model\(s\) on (\S+)", text).group(1)
    return elapsed, _logged_seconds(text, "gradserve ", "ready: "), device


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="runs of each kind (default 5)")
    parser.add_argument("--buckets", default="1,8,64,512,4096",
                        help="GRADSERVE_BUCKETS (default: the service's default)")
    parser.add_argument("--models", type=Path, default=DEMO, help="model repository (default: demo)")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="gradserve-startup-"))
    try:
        models = work / "models"
        shutil.copytree(args.models, models, ignore=shutil.ignore_patterns("*.md"))
        warm = work / "warm-cache"
        start_to_ready(models, warm, args.buckets)  # fills the cache the cached runs start from
        times: dict[str, list[tuple[float, float]]] = {"cold": [], "cached": []}
        device = "?"
        for i in range(args.runs):
            elapsed, loading, device = start_to_ready(models, work / f"cold-{i}", args.buckets)
            times["cold"].append((elapsed, loading))
            elapsed, loading, device = start_to_ready(models, warm, args.buckets)
            times["cached"].append((elapsed, loading))
            print(f"run {i + 1}/{args.runs}: cold {times['cold'][-1][0]:.2f} s, "
                  f"cached {times['cached'][-1][0]:.2f} s", file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    import jax  # only for the version in the header: the timed processes import it themselves

    n_models = len([p for p in args.models.iterdir() if p.is_dir()])
    print(f"Start to ready, {n_models} models, buckets {args.buckets}, device {device}, "
          f"jax {jax.__version__}, Python {platform.python_version()}, {os.cpu_count()} CPU(s); "
          f"medians of {args.runs} runs (min-max)\n")
    print("| start | start to ready (s) | of which loading and compiling (s) |")
    print("| --- | --- | --- |")
    for kind, rows in times.items():
        total = [t for t, _ in rows]
        loading = [t for _, t in rows]
        print(f"| {kind} | {statistics.median(total):.2f} ({min(total):.2f}-{max(total):.2f}) "
              f"| {statistics.median(loading):.2f} ({min(loading):.2f}-{max(loading):.2f}) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
