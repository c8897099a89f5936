"""``shmbus stat [BUS[/TOPIC]]``: a bus's topics (every memory bus's without
BUS) with partitions, fill, groups, members, lag, rates, drops and health.
Rates come from two looks ``--interval`` seconds apart (0: no rates)."""
import argparse
import json
import time
from typing import Any, Dict

from rich.console import Console
from rich.table import Table

from .common import Failed, Usage, add_path, target
from .report import Watcher


def add_parser(sub: "argparse._SubParsersAction", name: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help="topics, partitions, groups, members, lag, rates, drops, health")
    p.add_argument("target", nargs="?", metavar="BUS[/TOPIC]",
                   help="a bus, or one topic of it (default: every memory bus)")
    p.add_argument("--json", action="store_true", help="print JSON only (schema in the README)")
    p.add_argument("--interval", type=float, default=0.5, metavar="S",
                   help="seconds between the two looks that give rates (default 0.5; 0: none)")
    add_path(p)
    return p


def run(args: argparse.Namespace) -> int:
    if args.interval < 0:
        raise Usage("--interval must be >= 0")
    bus, topic = target(args.target) if args.target else (None, None)
    if bus is None and args.path is not None:
        raise Usage("--path needs a BUS")
    w = Watcher(None if bus is None else [bus], args.path, topic)
    try:
        report = w.look()
        if args.interval > 0:
            time.sleep(args.interval)
            report = w.look()
    finally:
        w.close()
    if bus is not None:
        b = report["buses"][bus]
        if "error" in b:
            raise Failed(b["error"])
        if topic is not None and "missing" in b["topics"][topic]:
            raise Failed(b["topics"][topic]["missing"])
    if args.json:
        print(json.dumps(report, indent=2, sort_keys=True))
    else:
        show(Console(), report)
    damaged = any(t["health"]["status"] == "damaged"
                  for b in report["buses"].values() for t in b.get("topics", {}).values())
    return 1 if damaged else 0


def show(console: Console, report: Dict[str, Any]) -> None:
    """The report as text tables."""
    if not report["buses"]:
        console.print("no buses")
    for name, b in report["buses"].items():
        if "error" in b:
            console.print(f"[bold]bus {name}[/]: [red]{b['error']}[/]")
            continue
        console.print(f"[bold]bus {name}[/]" + (f" ({b['path']})" if b["path"] else "")
                      + ("" if b["topics"] else ": no topics"))
        for tname, t in b["topics"].items():
            _topic(console, tname, t)
        for r in b.get("bridges", []):
            console.print("  " + bridge_line(r))


def bridge_line(r: Dict[str, Any]) -> str:
    """One bridge's latest report, for stat and top."""
    arrow = "->" if r["direction"] == "out" else "<-"
    if not r["running"]:
        state = "stopped"
    elif r["connected"]:
        state = "connected" + (", paused: topic full" if r["paused"] else "")
    else:
        state = f"disconnected ({r['last_error']})"
    return (f"bridge {r['topic']} {arrow} {r['remote']} (pid {r['pid']}): "
            f"{r['forwarded']:,} forwarded, {state}, {r['reconnects']} reconnects")


def _topic(console: Console, name: str, t: Dict[str, Any]) -> None:
    h = t["health"]
    colour = {"ok": "green", "warning": "yellow", "damaged": "red"}[h["status"]]
    if "config" not in t:
        what = "damaged" if "damaged" in t else "missing"
        console.print(f"  topic [bold]{name}[/]: [{colour}]{what}: {h['problems'][0]['text']}[/]")
        return
    c = t["config"]
    r = t["rates"]
    rate = "" if r is None else f", {r['messages']:,.0f} msgs/s, {r['bytes'] / 2**20:,.1f} MiB/s"
    console.print(f"  topic [bold]{name}[/]: {c['partitions']} partition(s) of "
                  f"{c['capacity'] / 2**20:g} MiB, on_full={c['on_full']}, "
                  f"retention={c['retention']}, {len(t['producers'])} producer(s){rate}: "
                  f"[{colour}]{h['status']}[/]")
    for problem in h["problems"]:
        console.print(f"    [{colour}]! {problem['text']}[/]")
    parts = Table("partition", "published", "oldest", "fill", "dropped", "recovered",
                  box=None, padding=(0, 1), show_edge=False)
    for p in t["partitions"]:
        dropped = p["dropped_full"] + p["dropped_oldest"] + p["spill_lost"]
        parts.add_row(str(p["partition"]), f"{p['published']:,}", f"{p['oldest']:,}",
                      f"{p['fill']:.0%}", f"{dropped:,}", f"{p['recovered_claims']:,}")
    console.print(parts)
    if not t["groups"]:
        return
    groups = Table("group", "ack", "members", "lag", "pending", "delivered", "acked",
                   "redeliv.", "dead", "msgs/s", box=None, padding=(0, 1), show_edge=False)
    groups.columns[0].no_wrap = True
    for g in t["groups"]:
        dead = sum(1 for m in g["members"] if not m["alive"])
        rate = g.get("rates")
        groups.add_row(g["name"] or "(private)", g["ack"],
                       f"{g['live_members']}" + (f" ({dead} dead)" if dead else ""),
                       f"{g['lag']:,}", f"{g['pending']:,}", f"{g['delivered']:,}",
                       f"{g['acked']:,}", f"{g['redelivered']:,}", f"{g['dead_lettered']:,}",
                       "" if rate is None else f"{rate['delivered']:,.0f}")
    console.print(groups)
