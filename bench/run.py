"""The benchmark, one command: the real service and the two peers started here, measured in one
run, and a table of medians and p99s printed.

    python bench/run.py [--quick] [--no-peers] [--no-wrk] [--work DIR] [--markdown FILE]

Serves one model (the peers' 8-64-64-2 MLP, built with ``from_arrays`` from the same weights)
from gradserve with batching on and with it off, and from UM-Bridge and Tesseract (their
environments are made on first use under --work; skipped where that fails). All servers run
side by side and every comparison is interleaved: each round measures every contender of a cell
once, in turn, so a burst of load from elsewhere on the machine hits them all alike; a figure is
the median over rounds. Measured: the in-process floor (the engine called directly), the bare
framework floor, latency per call from a load generator (wrk, else bench/loadgen.py) and from
the Python clients, and throughput at 1, 16 and 64 connections. With a GPU, JAX uses it and the
device is printed; the peers run on the CPU, as they were first measured.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # the servers share the device
HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "service"), str(HERE.parent / "client")]

import httpx  # noqa: E402
import numpy as np  # noqa: E402

import measure  # noqa: E402
import peer_model  # noqa: E402
import report  # noqa: E402
import servers  # noqa: E402

ALL = [(m, n) for m in measure.METHODS for n in (1, 64, 4096, 65536)]
PLANS = {  # seconds per load run, rounds per cell, the cells, calls per client or floor timing
    "full": {"seconds": 2, "rounds": 5, "cells": ALL, "client_cells": ALL,
             "peer_cells": [(m, n) for m in measure.METHODS for n in (1, 64, 4096)],
             "reps": {1: 100, 64: 100, 4096: 40, 65536: 2}},
    "quick": {"seconds": 1, "rounds": 2,
              "cells": [(m, n) for m in measure.METHODS for n in (1, 64)] + [("gradient", 4096), ("gradient", 65536)],
              "client_cells": [("gradient", n) for n in (1, 64, 4096, 65536)],
              "peer_cells": [("gradient", n) for n in (1, 64, 4096)],
              "reps": {1: 100, 64: 100, 4096: 10, 65536: 2}},
}
CONNECTIONS = (1, 16, 64)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer cells, 1 s runs (~3 min)")
    parser.add_argument("--no-peers", action="store_true", help="skip UM-Bridge and Tesseract")
    parser.add_argument("--no-wrk", action="store_true", help="use bench/loadgen.py even where wrk exists")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "gradserve-bench",
                        help="scratch folder: model repository, peer environments, logs, results")
    parser.add_argument("--markdown", type=Path, help="also write the tables to this file")
    args = parser.parse_args(argv)
    plan = PLANS["quick" if args.quick else "full"]
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    def log(text: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f} s] {text}", file=sys.stderr, flush=True)

    import jax

    # The floor is the engine as the service runs it (DataPlane: synchronous CPU dispatch).
    jax.config.update("jax_cpu_enable_async_dispatch", False)
    load = measure.Load(work, use_wrk=not args.no_wrk)
    repo = build_repository(work)
    r: dict = {"mode": "quick" if args.quick else "full", "machine": machine(load), "plan": {
        k: v for k, v in plan.items() if k in ("seconds", "rounds")}}
    ours = {"on": servers.gradserve(repo, work, batching=True, label="gradserve").start(),
            "off": servers.gradserve(repo, work, batching=False, label="gradserve-unbatched").start()}
    peers: dict[str, tuple[servers.Server, Path]] = {}
    try:
        if not args.no_peers:
            for peer, make in (("umbridge", servers.umbridge), ("tesseract", servers.tesseract)):
                python = servers.peer_python(work, peer, log)
                if python is not None:
                    peers[peer] = (make(python, work).start(), python)
        model = gradserve_model(repo)
        log("waiting for the servers to be ready (gradserve compiles every kernel first)")
        for server in [*ours.values(), *(s for s, _ in peers.values())]:
            server.wait_ready()
        device = jax.devices()[0]
        r["machine"]["device"] = f"{httpx.get(ours['on'].url + '/models/mlp').json()['device']} ({device.device_kind})"
        log(f"ready; gradserve computes on {r['machine']['device']}")
        w = model.get_weights().ravel()
        check_answers(plan, ours["on"], peers, model, w, log)
        r["bare"] = interleaved(plan["rounds"], {"bare": lambda: load.run(
            ours["on"].url, [("/healthz", "-", "-", b"")], 1, plan["seconds"], method="GET", pid=ours["on"].pid)})["bare"]
        latency(r, plan, load, ours, peers, model, w, log)
        clients(r, plan, ours["on"], peers, w, log)
        throughput(r, plan, load, ours, peers, w, log)
    finally:
        for server in [*ours.values(), *(s for s, _ in peers.values())]:
            server.stop()
    r["machine"]["load_after"] = load_average()
    r["seconds"] = time.perf_counter() - started
    text = report.render(r)
    command = " ".join(["python bench/run.py", *(argv if argv is not None else sys.argv[1:])])
    print(text + f"\n\nCommand: `{command}`; the run took {r['seconds']:.0f} s.")
    out = work / f"results-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(r, indent=1))
    log(f"results: {out}")
    if args.markdown:
        args.markdown.write_text(text + f"\n\nCommand: `{command}`; the run took {r['seconds']:.0f} s.\n")
    return 0


# --- set-up -----------------------------------------------------------------------------------------

def build_repository(work: Path) -> Path:
    """The peers' MLP as a gradserve model repository: <work>/models/mlp/1/."""
    import gradserve

    repo = work / "models"
    if not (repo / "mlp").is_dir():
        layers = peer_model.weights()
        model = gradserve.from_arrays([w for w, _ in layers], [b for _, b in layers],
                                      ["tanh", "tanh", "identity"], name="mlp")
        assert np.array_equal(model.get_weights().ravel(), peer_model.flat_weights())
        gradserve.save_model(model, repo / "mlp")
    return repo


def gradserve_model(repo: Path):
    import gradserve

    return gradserve.load_model(repo / "mlp", warmup=True)


def machine(load: measure.Load) -> dict:
    import jax

    cpu = platform.processor() or "?"
    try:
        cpu = next(ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "jax": jax.__version__, "device": "?",
            "load": load.name, "load_before": load_average(), "python": platform.python_version()}


def load_average() -> str:
    try:
        return " ".join(open("/proc/loadavg").read().split()[:3])
    except OSError:
        return "?"


def expected(model, method: str, n: int, w: np.ndarray):
    a = measure.arrays(method, n, w)
    if method == "evaluate":
        return model.evaluate(a["x"], a["w"])
    if method == "forward_derivative":
        return model.forward_derivative(a["w"], a["dw"], a["x"], a["dx"])
    return model.gradient(a["w"], a["x"], a["py"])


def check_answers(plan, on, peers, model, w, log) -> None:
    """Every body is sent once and its answer compared with the engine's: what is timed is right.
    This is also each peer's first call per n, which compiles (they compile per new shape)."""
    for method, n in plan["cells"]:
        for encoding in ("binary", "json"):
            measure.check_answer("gradserve", on.url, measure.ours(method, n, encoding, w), method,
                                 expected(model, method, n, w))
    for peer, (server, _) in peers.items():
        body = measure.umbridge_body if peer == "umbridge" else measure.tesseract_body
        for method, n in plan["peer_cells"]:
            measure.check_answer(peer, server.url, body(method, n, w), method, expected(model, method, n, w))
    log("every server answers every call right")


# --- measuring ----------------------------------------------------------------------------------

def interleaved(rounds: int, contenders: dict[str, Callable[[], dict]]) -> dict[str, dict]:
    """Each contender once per round, in turn; each contender's runs combined."""
    runs: dict[str, list[dict]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, run in contenders.items():
            runs[name].append(run())
    return {name: combine(rs) for name, rs in runs.items()}


def combine(runs: list[dict]) -> dict:
    """Runs of one contender as one figure: the median run's median and p99, answers over the
    total time, CPU per answer over all answers."""
    out = {"median_ms": float(np.median([x["median_ms"] for x in runs])),
           "p99_ms": float(np.median([x["p99_ms"] for x in runs])),
           "count": sum(x["count"] for x in runs), "runs": len(runs)}
    if all("rps" in x for x in runs):
        seconds = sum(x["count"] / x["rps"] for x in runs if x["rps"])
        out["rps"] = out["count"] / seconds if seconds else 0.0
        out["errors"] = sum(x["errors"] for x in runs)
    cpu = [(x["cpu_us"], x["count"]) for x in runs if x.get("cpu_us") is not None]
    if cpu:
        out["cpu_us"] = sum(c * k for c, k in cpu) / sum(k for _, k in cpu)
    return out


def latency(r, plan, load, ours, peers, model, w, log) -> None:
    """Per cell: the floor, then each server's fastest encoding (and ours in JSON), in turn."""
    r["floor"], r["latency"], r["peers"] = {}, {}, {p: {"latency": {}} for p in peers}
    on, off, secs = ours["on"], ours["off"], plan["seconds"]
    for method, n in plan["cells"]:
        key = f"{method}/{n}"
        a = measure.arrays(method, n, w)
        contenders = {"floor": lambda: measure.time_calls(measure.method_call(model, method, a),
                                                          plan["reps"][n] * 10, 10)}
        for encoding in ("binary", "json"):
            body = measure.ours(method, n, encoding, w)
            contenders[encoding] = lambda body=body: load.run(on.url, [body], 1, secs, pid=on.pid)
        if (method, n) in plan["peer_cells"]:
            for peer, (server, _) in peers.items():
                body = (measure.umbridge_body if peer == "umbridge" else measure.tesseract_body)(method, n, w)
                contenders[peer] = lambda body=body, server=server: load.run(server.url, [body], 1, secs, pid=server.pid)
        if key == "gradient/1":  # what batching costs a lone client
            body = measure.ours(method, n, "binary", w)
            contenders["off"] = lambda: load.run(off.url, [body], 1, secs, pid=off.pid)
        res = interleaved(plan["rounds"], contenders)
        r["floor"][key] = res.pop("floor")
        for peer in peers:
            if peer in res:
                r["peers"][peer]["latency"].setdefault(key, {})["wrk"] = res.pop(peer)
        if "off" in res:
            r["latency_off"] = res.pop("off")
        r["latency"][key] = res
        log(f"latency {key}: floor {r['floor'][key]['median_ms']:.3f} ms, binary {res['binary']['median_ms']:.3f} ms, "
            f"JSON {res['json']['median_ms']:.3f} ms"
            + "".join(f", {p} {r['peers'][p]['latency'][key]['wrk']['median_ms']:.3f} ms"
                      for p in peers if key in r["peers"][p]["latency"]))


def clients(r, plan, on, peers, w, log) -> None:
    """Each round: our Python client over its cells in both encodings, then each peer's own
    Python client over its cells (one process per peer and round)."""
    runs: dict[tuple, list] = {}
    for _ in range(min(2, plan["rounds"])):  # a client call is timed many times per round
        for method, n in plan["client_cells"]:
            for encoding in ("binary", "json"):
                reps = plan["reps"][n] if encoding == "binary" else max(2, plan["reps"][n] // 4)
                runs.setdefault(("ours", f"{method}/{n}", encoding), []).append(
                    measure.python_client(on.url, method, n, encoding, w, reps))
        for peer, (server, python) in peers.items():
            cases = [[m, n, plan["reps"][n]] for m, n in plan["peer_cells"]]
            try:
                for key, s in measure.peer_clients(python, peer, server.url, cases).items():
                    runs.setdefault((peer, key, "Python"), []).append(s)
            except RuntimeError as exc:
                log(f"{peer} client failed: {exc}")
    for (who, key, what), rs in runs.items():
        if who == "ours":
            r["latency"].setdefault(key, {})[f"client_{what}"] = combine(rs)
        else:
            r["peers"][who]["latency"].setdefault(key, {})[what] = {**combine(rs), "client": rs[0].get("client")}
    log("Python clients measured")


def throughput(r, plan, load, ours, peers, w, log) -> None:
    """gradient, binary: batching off and on at 1, 16 and 64 connections, the same w for every
    request or one of 64 distinct vectors per request; and n = 64 at 16 connections, where the
    peers (prebuilt bodies, as for us) take their turn too."""
    distinct = measure.distinct_w(w)
    cells = [(f"1/{c}/{kind}", bodies, c) for c in CONNECTIONS
             for kind, bodies in (("same", [measure.ours("gradient", 1, "binary", w)]), ("distinct", distinct))]
    cells.append(("64/16/same", [measure.ours("gradient", 64, "binary", w)], 16))
    r["throughput"] = {}
    for key, bodies, conns in cells:
        contenders = {label: lambda s=s: load.run(s.url, bodies, conns, plan["seconds"], pid=s.pid)
                      for label, s in (("off", ours["off"]), ("on", ours["on"]))}
        if key == "64/16/same":
            for peer, (server, _) in peers.items():
                body = (measure.umbridge_body if peer == "umbridge" else measure.tesseract_body)("gradient", 64, w)
                contenders[peer] = lambda body=body, server=server: load.run(
                    server.url, [body], conns, plan["seconds"], pid=server.pid)
        res = interleaved(plan["rounds"], contenders)
        for peer in peers:
            if peer in res:
                r["peers"][peer]["throughput"] = res.pop(peer)
        r["throughput"][key] = res
        log(f"throughput {key}: off {res['off']['rps']:.0f}/s, on {res['on']['rps']:.0f}/s")


if __name__ == "__main__":
    sys.exit(main())
