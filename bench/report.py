"""The results of one run as markdown tables, and the issue's targets checked against them."""

from __future__ import annotations

METHOD_NAMES = {"evaluate": "evaluate", "forward_derivative": "forward_derivative (JVP)",
                "gradient": "gradient (VJP, w and x)"}


def _cell(s: dict | None, ref: float | None = None) -> str:
    if not s:
        return "-"
    text = f"{s['median_ms']:.3f} / {s['p99_ms']:.3f}"
    if ref:
        text += f" ({s['median_ms'] / ref:.1f}×)"
    return text


def rps_cell(s: dict | None) -> str:
    if not s:
        return "-"
    err = f", {s['errors']} errors" if s.get("errors") else ""
    return f"{s['rps']:.0f} ({s['median_ms']:.2f} / {s['p99_ms']:.2f}{_cpu(s)}{err})"


def _cpu(s: dict | None) -> str:
    return f"; {s['cpu_us']:.0f} µs CPU" if s and s.get("cpu_us") is not None else ""


def _generator(r: dict) -> str:
    return "wrk" if r["machine"]["load"].startswith("wrk") else "load generator"


def render(r: dict) -> str:
    out = []
    add = out.append
    m = r["machine"]
    gen = _generator(r)
    add(f"Machine: {m['cpu']}, {m['cores']} cores; device: {m['device']}; jax {m['jax']}; "
        f"load generator: {m['load']}; mode: {r['mode']}; load average before/after: "
        f"{m['load_before']} / {m.get('load_after', '?')}.\n")

    add("### Floors (median / p99 ms)\n")
    add("| floor | median / p99 |\n|---|---|")
    add(f"| bare framework: `GET /healthz` of the same service (a constant), 1 connection | {_cell(r['bare'])}{_cpu(r['bare'])} |")
    for key, s in r["floor"].items():
        method, n = key.split("/")
        add(f"| in process: the engine called directly, {METHOD_NAMES[method]}, n = {n}, numpy in and out | {_cell(s)} |")

    add("\n### Latency per call, one client (median / p99 ms; × = median over the in-process floor; "
        "CPU = the server's CPU time per call, all threads)\n")
    add(f"| method | n | binary, {gen} | JSON, {gen} | binary, Python client | JSON, Python client | CPU, binary |")
    add("|---|---|---|---|---|---|---|")
    for key, row in r["latency"].items():
        method, n = key.split("/")
        ref = r["floor"].get(key, {}).get("median_ms")
        cpu = row.get("binary", {}).get("cpu_us")
        add(f"| {METHOD_NAMES[method]} | {n} | {_cell(row.get('binary'), ref)} | {_cell(row.get('json'), ref)} "
            f"| {_cell(row.get('client_binary'), ref)} | {_cell(row.get('client_json'), ref)} "
            f"| {f'{cpu:.0f} µs' if cpu is not None else '-'} |")
    if r.get("latency_off"):
        s = r["latency_off"]
        add(f"\nA lone client, gradient n = 1, binary, {gen}: batching off {_cell(s)}{_cpu(s)}; "
            f"batching on {_cell(r['latency']['gradient/1'].get('binary'))}"
            f"{_cpu(r['latency']['gradient/1'].get('binary'))}.")

    add("\n### Throughput, gradient, binary: requests/s (median / p99 ms; server CPU per request)\n")
    add("| n | connections | w | batching off | batching on | on / off |")
    add("|---|---|---|---|---|---|")
    for key, row in r["throughput"].items():
        n, conns, kind = key.split("/")
        off, on = row.get("off"), row.get("on")
        ratio = f"{on['rps'] / off['rps']:.2f}×" if on and off else "-"
        add(f"| {n} | {conns} | {kind} | {rps_cell(off)} | {rps_cell(on)} | {ratio} |")

    if r.get("peers"):
        add("\n### Side by side, the same model (8-64-64-2 tanh MLP, p = 4866, float64), median / p99 ms\n")
        add("Each server gets its fastest encoding: gradserve binary, Tesseract base64 in JSON, "
            "UM-Bridge JSON (its only one). Ratio = peer median / gradserve median (> 1: gradserve faster).\n")
        add("| call | n | client | gradserve | UM-Bridge | Tesseract | × UM-Bridge | × Tesseract |")
        add("|---|---|---|---|---|---|---|---|")
        for row in side_by_side(r):
            add("| " + " | ".join(row) + " |")
    targets = check_targets(r)
    add("\n### Targets of the issue\n")
    add("| target | measured | met |\n|---|---|---|")
    for name, measured, met in targets:
        add(f"| {name} | {measured} | {'yes' if met else ('no' if met is False else '-')} |")
    return "\n".join(out)


def side_by_side(r: dict) -> list[list[str]]:
    rows = []
    peers = r["peers"]
    for key, row in r["latency"].items():
        method, n = key.split("/")
        for client, ours_key in (("wrk", "binary"), ("Python", "client_binary")):
            ours = row.get(ours_key)
            theirs = {p: peers.get(p, {}).get("latency", {}).get(key, {}).get(client) for p in ("umbridge", "tesseract")}
            if not ours or not any(theirs.values()):
                continue
            ratios = [f"{t['median_ms'] / ours['median_ms']:.1f}×" if t else "-" for t in theirs.values()]
            label = "Python clients" if client == "Python" else _generator(r)
            rows.append([METHOD_NAMES[method], n, label, _cell(ours), _cell(theirs["umbridge"]),
                         _cell(theirs["tesseract"]), *ratios])
    ours = r["throughput"].get("64/16/same", {}).get("on")
    theirs = {p: peers.get(p, {}).get("throughput") for p in ("umbridge", "tesseract")}
    if ours and any(theirs.values()):
        ratios = [f"{ours['rps'] / t['rps']:.1f}×" if t else "-" for t in theirs.values()]
        rows.append(["gradient requests/s, 16 connections", "64", _generator(r), rps_cell(ours),
                     rps_cell(theirs["umbridge"]), rps_cell(theirs["tesseract"]), *ratios])
    return rows


def check_targets(r: dict) -> list[tuple[str, str, bool | None]]:
    out = []
    lat, fl = r["latency"], r["floor"]
    g64, f64 = lat.get("gradient/64", {}).get("binary"), fl.get("gradient/64")
    if g64 and f64 and r.get("bare"):
        overhead = g64["median_ms"] - f64["median_ms"]
        ratio = overhead / r["bare"]["median_ms"]
        out.append(("server overhead over the floor, n = 64, binary, ≤ 1.5× the bare framework floor",
                    f"{overhead:.3f} ms over {r['bare']['median_ms']:.3f} ms: {ratio:.2f}×", ratio <= 1.5))
    g4k, f4k = lat.get("gradient/4096", {}).get("binary"), fl.get("gradient/4096")
    if g4k and f4k:
        ratio = g4k["median_ms"] / f4k["median_ms"]
        out.append(("gradient n = 4096, binary, end to end ≤ 1.5× in process",
                    f"{g4k['median_ms']:.3f} / {f4k['median_ms']:.3f} ms: {ratio:.2f}×", ratio <= 1.5))
    t = r["throughput"].get("1/64/distinct", {})
    if t.get("on") and t.get("off"):
        ratio = t["on"]["rps"] / t["off"]["rps"]
        p99 = t["on"]["p99_ms"] / t["off"]["p99_ms"]
        out.append(("64 clients, n = 1, distinct w: ≥ 3× the requests/s of batching off",
                    f"{t['on']['rps']:.0f} / {t['off']['rps']:.0f} req/s: {ratio:.2f}×", ratio >= 3))
        out.append(("... and p99 no worse than 2× the unbatched p99",
                    f"{t['on']['p99_ms']:.2f} / {t['off']['p99_ms']:.2f} ms: {p99:.2f}×", p99 <= 2))
    if r.get("peers"):
        worst: dict[str, float] = {}
        for key, row in r["latency"].items():
            method, n = key.split("/")
            for client, ours_key in (("wrk", "binary"), ("Python", "client_binary")):
                ours = row.get(ours_key)
                peers = [p.get("latency", {}).get(key, {}).get(client) for p in r["peers"].values()]
                peers = [p for p in peers if p]
                if ours and peers:
                    ratio = min(p["median_ms"] for p in peers) / ours["median_ms"]
                    group = "4096" if n == "4096" else ("1, 64" if n in ("1", "64") else n)
                    worst[group] = min(worst.get(group, ratio), ratio)
        if "1, 64" in worst:
            out.append(("vs the better peer, n = 1 and 64: ≥ 3× lower latency per call (every method, both clients)",
                        f"worst row {worst['1, 64']:.1f}×", worst["1, 64"] >= 3))
        if "4096" in worst:
            out.append(("vs the better peer, n = 4096: ≥ 2× lower latency", f"worst row {worst['4096']:.1f}×",
                        worst["4096"] >= 2))
        ours = r["throughput"].get("64/16/same", {}).get("on")
        peers = [p.get("throughput") for p in r["peers"].values() if p.get("throughput")]
        if ours and peers:
            ratio = ours["rps"] / max(p["rps"] for p in peers)
            out.append(("vs the better peer: ≥ 5× the requests/s, n = 64, 16 clients",
                        f"{ours['rps']:.0f} / {max(p['rps'] for p in peers):.0f} req/s: {ratio:.1f}×", ratio >= 5))
        rows = side_by_side(r)
        ahead = all(all(float(c.rstrip("×")) > 1 for c in row[-2:] if c != "-") for row in rows)
        out.append(("ahead of both peers on every row of the side-by-side table", f"{len(rows)} rows", ahead))
    return out
