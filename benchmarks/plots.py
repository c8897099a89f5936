"""One PNG of the suite's results: 1 -> 1 throughput in messages/s and in GB/s, the
round-trip latency CDF and fan-out scaling."""
import datetime
from collections import defaultdict
from typing import Dict, List, Tuple

_KIB, _MIB = 1024, 1024 * 1024


def _size_text(n: float) -> str:
    n = int(n)
    if n >= _MIB and n % _MIB == 0:
        return f"{n // _MIB} MiB"
    if n >= _KIB and n % _KIB == 0:
        return f"{n // _KIB} KiB"
    return f"{n} B"


def _ok(r: dict) -> bool:
    return bool(r.get("runs")) and not r.get("failures") and r.get("median") is not None


def _lines(results: List[dict], keep, x_of) -> Dict[str, List[Tuple[float, float]]]:
    lines: Dict[str, List[Tuple[float, float]]] = defaultdict(list)
    for r in results:
        if keep(r) and _ok(r):
            lines[r["peer"]].append((x_of(r), r["median"]))
    return {peer: sorted(points) for peer, points in sorted(lines.items())}


def _failed(results: List[dict]) -> List[str]:
    notes = []
    for r in results:
        if not _ok(r):
            why = (r.get("failures") or ["no runs"])[0]
            notes.append(f"{r.get('peer')} {r.get('workload')} {_size_text(r.get('size', 0))}"
                         f" {r.get('producers', 1)}->{r.get('consumers', 1)}: {why}")
    return notes


def _title(results: dict) -> str:
    m = results.get("machine") or {}
    cpu = m.get("cpu") or m.get("processor") or "unknown CPU"
    cores = m.get("cores") or m.get("cpus") or m.get("logical_cores")
    date = m.get("date") or datetime.date.today().isoformat()
    cores_text = f", {cores} cores" if cores else ""
    return f"shmbus and its peers: {cpu}{cores_text}, {date}"


def write(results: dict, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    rows = results.get("results") or []
    floors = results.get("floors") or {}
    latency = results.get("latency") or []

    fig, axes = plt.subplots(2, 2, figsize=(14, 10), dpi=100)
    (a, b), (c, d) = axes
    colours: Dict[str, str] = {}
    palette = plt.rcParams["axes.prop_cycle"].by_key()["color"]

    def colour(peer: str) -> str:
        if peer not in colours:
            colours[peer] = palette[len(colours) % len(palette)]
        return colours[peer]

    one_to_one = _lines(rows, lambda r: r.get("workload") == "1to1" and r.get("kind") == "bytes",
                        lambda r: r["size"])
    sizes = sorted({x for points in one_to_one.values() for x, _ in points})
    for peer, points in one_to_one.items():
        xs = [x for x, _ in points]
        a.plot(xs, [y for _, y in points], "o-", label=peer, color=colour(peer))
        b.plot(xs, [y * x / 1e9 for x, y in points], "o-", label=peer, color=colour(peer))
    a.set_title("(a) 1 \u2192 1 throughput")
    a.set_ylabel("messages/s")
    b.set_title("(b) 1 \u2192 1 throughput in bytes")
    b.set_ylabel("GB/s")
    for label, key, style in (("memcpy", "memcpy_gb_s", "--"),
                              ("C core, 2 processes (64 KiB)", "c_core_64k_gb_s", ":")):
        if floors.get(key):
            b.axhline(floors[key], color="grey", linestyle=style, linewidth=1.5,
                      label=f"{label}: {floors[key]:.1f} GB/s")
    if floors.get("c_core_64b_msgs_s"):
        a.axhline(floors["c_core_64b_msgs_s"], color="grey", linestyle=":", linewidth=1.5,
                  label=f"C core, 2 processes (64 B): {floors['c_core_64b_msgs_s'] / 1e6:.1f} M/s")
    for ax in (a, b):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("message size")
        if sizes:
            ax.xaxis.set_major_locator(FixedLocator(sizes))
            ax.xaxis.set_minor_locator(NullLocator())
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: _size_text(v)))

    for entry in sorted(latency, key=lambda e: (e.get("peer", ""), e.get("mode", ""))):
        cdf = entry.get("cdf_us") or []
        if not cdf:
            continue
        n = len(cdf)
        style = "-" if entry.get("mode") == "spin" else "--"
        c.plot(cdf, [(i + 1) / n for i in range(n)], style, color=colour(entry["peer"]),
               label=f"{entry['peer']} ({entry.get('mode')}): p50 {entry.get('p50_us', 0):.1f} \u00b5s")
    c.set_xscale("log")
    c.set_ylim(0, 1.0)
    c.set_title(f"(c) round trip, {_size_text(latency[0].get('size', 64)) if latency else '64 B'}"
                " ping-pong: CDF (solid: spinning, dashed: blocking)")
    c.set_xlabel("round trip (\u00b5s)")
    c.set_ylabel("fraction of round trips")

    fanout = _lines(rows, lambda r: r.get("workload") == "fanout" and r.get("kind") == "bytes"
                    and r.get("size") == 64, lambda r: r["consumers"])
    consumers = sorted({x for points in fanout.values() for x, _ in points})
    for peer, points in fanout.items():
        d.plot([x for x, _ in points], [y for _, y in points], "o-", label=peer, color=colour(peer))
    d.set_title("(d) fan-out, 64 B: every subscriber gets every message")
    d.set_xlabel("subscribers")
    d.set_ylabel("deliveries/s, all subscribers together")
    d.set_yscale("log")
    if consumers:
        d.xaxis.set_major_locator(FixedLocator(consumers))

    for ax in (a, b, c, d):
        ax.grid(True, which="major", alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, loc="best")
        else:
            ax.text(0.5, 0.5, "no results", ha="center", va="center", transform=ax.transAxes,
                    color="grey")

    notes = _failed(rows) + [f"skipped: {s.get('peer')} {s.get('workload')}: {s.get('reason')}"
                             for s in results.get("skipped") or []]
    bottom = 0.04
    if notes:
        shown = notes[:6] + ([f"... and {len(notes) - 6} more"] if len(notes) > 6 else [])
        fig.text(0.01, 0.005, "Left out: " + "; ".join(shown), fontsize=7, color="dimgrey",
                 wrap=True, va="bottom")
        bottom = 0.07
    fig.suptitle(_title(results), fontsize=13)
    fig.tight_layout(rect=(0, bottom, 1, 0.97))
    fig.savefig(path)
    plt.close(fig)
