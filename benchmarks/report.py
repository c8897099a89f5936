"""What the suite prints and writes: the results as the JSON document (schema 1,
read by plots.py) and as rich tables, one per workload family; and, from a JSON
document, the Markdown tables of the README's Performance section:

    python benchmarks/report.py results.json
"""
import json
import statistics
import sys
from typing import Any, Dict, List, Tuple

from workloads import KiB, MiB, Workload

BASELINE = "shmbus"
CDF_POINTS = 500

FAMILIES = [
    (("1to1",), "1 producer -> 1 consumer, a fresh bytes per message"),
    (("numpy",), "numpy arrays, 1 -> 1 (one reused array, stamped in place)"),
    (("fanout",), "fan-out: every subscriber gets every message (msgs/s = all deliveries)"),
    (("group", "4to1"), "competing consumers, many producers"),
    (("batch", "columnar"), "batches: send_many/recv_many by 1000, columnar rows by 4096"),
]


def size_text(n: int) -> str:
    return f"{n // MiB} MiB" if n >= MiB else f"{n // KiB} KiB" if n >= KiB else f"{n} B"


def rate_text(r: float) -> str:
    return f"{r / 1e6:.2f} M" if r >= 1e6 else f"{r / 1e3:.1f} k" if r >= 1e3 else f"{r:.0f}"


def label(w: Workload) -> str:
    """How a workload is named in a table row."""
    if w.kind == "ping":
        return f"ping-pong {size_text(w.size)}, " + ("spinning" if w.spin else "blocking")
    many = w.producers > 1 or w.consumers > 1 or w.pattern == "each"
    shape = f"{w.producers} -> {w.consumers}" if many else ""
    if w.pattern == "share" and w.consumers > 1:
        shape += " (one group)"
    how = {"batch": f"by {w.batch}", "columnar": f"columns, {w.batch} rows"}.get(w.kind, "")
    return ", ".join(x for x in (how, shape, size_text(w.size)) if x)


# -- the JSON document --------------------------------------------------------------

def document(command: str, machine: Dict[str, str], versions: Dict[str, str],
             outcomes: Dict[Tuple[Workload, str], List[Any]], names: Dict[str, str],
             skipped: List[Dict[str, str]], floors: Dict[str, Any]) -> Dict[str, Any]:
    """The results as schema 1.  A row with any failed run has no median: a peer that
    loses messages is reported as failing, never as fast."""
    results, latency = [], []
    skipped = list(skipped)
    for (w, ref), runs in outcomes.items():
        failures = [o.failure for o in runs if o.failure]
        rates = [o.rate for o in runs if o.rate]
        if w.kind == "ping":
            if failures:
                skipped.append({"peer": names[ref], "workload": w.name, "size": w.size,
                                "reason": f"failed ({'spin' if w.spin else 'block'}): {failures[0]}"})
            elif rates:
                latency.append(_latency(names[ref], w, [x for o in runs for x in o.lat_ns]))
            continue
        med = statistics.median(rates) if rates and not failures else None
        results.append({
            "workload": w.name, "kind": w.kind, "size": w.size, "producers": w.producers,
            "consumers": w.consumers, "pattern": w.pattern, "batch": w.batch,
            "peer": names[ref], "runs": rates, "median": med,
            "min": min(rates) if med else None, "max": max(rates) if med else None,
            "mb_per_s": med * w.size / 1e6 if med else None, "failures": failures,
        })
    return {"schema": 1, "command": command, "machine": machine, "versions": versions,
            "skipped": skipped, "results": results, "latency": latency, "floors": floors}


def _latency(peer: str, w: Workload, lat_ns: List[int]) -> Dict[str, Any]:
    lat = sorted(lat_ns)
    n = len(lat)
    q = lambda f: lat[min(n - 1, int(f * n))] / 1e3  # noqa: E731
    cdf = [lat[i * (n - 1) // (CDF_POINTS - 1)] / 1e3 for i in range(CDF_POINTS)] if n > CDF_POINTS \
        else [x / 1e3 for x in lat]
    return {"peer": peer, "mode": "spin" if w.spin else "block", "size": w.size,
            "p50_us": q(0.50), "p99_us": q(0.99), "p999_us": q(0.999), "cdf_us": cdf}


def write_json(doc: Dict[str, Any], path: str) -> None:
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")


# -- the tables ---------------------------------------------------------------------

def print_tables(console: Any, doc: Dict[str, Any], plan: List[Workload]) -> None:
    from rich.table import Table
    skips = {(s["workload"], s.get("size"), s["peer"]): s["reason"] for s in doc["skipped"]}
    by_key = {(r["workload"], r["size"], r["producers"], r["consumers"], r["pattern"], r["peer"]): r
              for r in doc["results"]}
    peers_shown = list(dict.fromkeys([r["peer"] for r in doc["results"]] + [x["peer"] for x in doc["latency"]]
                                     + [s["peer"] for s in doc["skipped"]]))
    for names, title in FAMILIES:
        ws = [w for w in plan if w.name in names]
        if not ws:
            continue
        t = Table(title=title, title_justify="left")
        for col in ("workload", "peer", "msgs/s", "MB/s", "spread", "shmbus ÷ peer", "notes"):
            t.add_column(col, justify="left" if col in ("workload", "peer", "notes") else "right")
        for w in ws:
            base = by_key.get((w.name, w.size, w.producers, w.consumers, w.pattern, BASELINE))
            for i, peer in enumerate(peers_shown):
                r = by_key.get((w.name, w.size, w.producers, w.consumers, w.pattern, peer))
                cells = _cells(r, base, w, skips.get((w.name, w.size, peer)))
                if cells:
                    t.add_row(label(w) if i == 0 else "", peer, *cells,
                              end_section=i == len(peers_shown) - 1)
        console.print(t)
    _print_latency(console, doc, peers_shown)


def _cells(r, base, w: Workload, skip_reason) -> List[str]:
    if r is None:
        return ["", "", "", "", f"skipped: {skip_reason}"] if skip_reason else []
    if r["median"] is None:
        n = len(r["failures"]) + len(r["runs"])
        return ["FAILED", "", "", "", f"{len(r['failures'])} of {n} runs: {r['failures'][0]}"]
    med = r["median"]
    spread = f"{(r['max'] - r['min']) / med * 100:.0f} %" if len(r["runs"]) > 1 else "-"
    ratio = f"{base['median'] / med:.1f}x" if base and base["median"] and r is not base else ""
    mb = f"{r['mb_per_s']:,.0f}" if w.size >= KiB else ""
    return [rate_text(med), mb, spread, ratio, ""]


def _print_latency(console: Any, doc: Dict[str, Any], peers_shown: List[str]) -> None:
    from rich.table import Table
    lat = {(x["mode"], x["peer"]): x for x in doc["latency"]}
    failed = {s["peer"]: s["reason"] for s in doc["skipped"] if s["workload"] == "ping"}
    if not lat and not failed:
        return
    t = Table(title="round trip, 64 B ping-pong (µs; the first tenth dropped as warm-up)",
              title_justify="left")
    for col in ("mode", "peer", "p50", "p99", "p99.9", "peer ÷ shmbus (p50)", "notes"):
        t.add_column(col, justify="left" if col in ("mode", "peer", "notes") else "right")
    for mode in ("spin", "block"):
        base = lat.get((mode, BASELINE))
        for i, peer in enumerate(peers_shown):
            x = lat.get((mode, peer))
            if x is None:
                why = [s["reason"] for s in doc["skipped"] if s["peer"] == peer and s["workload"] == "ping"
                       and (s["reason"].startswith(f"failed ({mode})") or not s["reason"].startswith("failed"))]
                if why:
                    t.add_row(mode if i == 0 else "", peer, "", "", "", "", why[0])
                continue
            ratio = f"{x['p50_us'] / base['p50_us']:.1f}x" if base and x is not base else ""
            t.add_row(mode if i == 0 else "", peer, f"{x['p50_us']:.1f}", f"{x['p99_us']:.1f}",
                      f"{x['p999_us']:.1f}", ratio, "", end_section=i == len(peers_shown) - 1)
    console.print(t)


def summary(values: List[float]) -> Dict[str, Any]:
    """Median and spread (max - min, as % of the median) of some runs."""
    med = statistics.median(values)
    spread = (max(values) - min(values)) / med * 100 if med else 0.0
    return {"median": med, "spread_pct": spread, "runs": values}


# -- Markdown, for the README -----------------------------------------------------------

def markdown(doc: Dict[str, Any]) -> str:
    """Two Markdown tables: throughput (one row per workload, one column per peer,
    medians, shmbus's spread, and shmbus over the best peer) and round trips."""
    peers_shown = list(dict.fromkeys(r["peer"] for r in doc["results"]))
    skips = {(s["workload"], s.get("size"), s["peer"]) for s in doc["skipped"]}
    rows: Dict[Tuple, Dict[str, Any]] = {}
    for r in doc["results"]:
        rows.setdefault((r["workload"], r["size"], r["producers"], r["consumers"], r["pattern"],
                         r["kind"], r["batch"]), {})[r["peer"]] = r
    out = ["| workload | " + " | ".join(peers_shown) + " | shmbus spread | shmbus ÷ best peer |",
           "|---" * (len(peers_shown) + 3) + "|"]
    for (name, size, producers, consumers, pattern, kind, batch), by_peer in rows.items():
        w = Workload(name, kind, size, 0, producers, consumers, pattern, batch)
        cells, best = [], 0.0
        for peer in peers_shown:
            r = by_peer.get(peer)
            if r is None:
                cells.append("n/a" if (name, size, peer) in skips else "")
            elif r["median"] is None:
                cells.append("lost/hung")
            else:
                cells.append(rate_text(r["median"]))
                if peer != BASELINE:
                    best = max(best, r["median"])
        base = by_peer.get(BASELINE)
        ok = base is not None and base["median"]
        spread = f"{(base['max'] - base['min']) / base['median'] * 100:.0f} %" if ok else ""
        ratio = f"{base['median'] / best:.1f}x" if ok and best else ""
        prefix = "fan-out " if name == "fanout" else "numpy " if kind == "numpy" else ""
        out.append(f"| {prefix}{label(w)} | " + " | ".join(cells) + f" | {spread} | {ratio} |")
    lat_peers = list(dict.fromkeys(x["peer"] for x in doc["latency"]))
    if lat_peers:
        out += ["", "| round trip, 64 B (µs) | " + " | ".join(lat_peers) + " |",
                "|---" * (len(lat_peers) + 1) + "|"]
        lat = {(x["mode"], x["peer"]): x for x in doc["latency"]}
        for mode in ("spin", "block"):
            for q, key in (("p50", "p50_us"), ("p99", "p99_us"), ("p99.9", "p999_us")):
                cells = [f"{lat[(mode, p)][key]:.1f}" if (mode, p) in lat else "lost/hung"
                         for p in lat_peers]
                out.append(f"| {mode}, {q} | " + " | ".join(cells) + " |")
    return "\n".join(out)


if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        print(markdown(json.load(f)))
