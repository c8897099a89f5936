"""``shmbus ls``: the buses and topics on this host (memory buses, or the disk
bus kept in ``--path DIR``), with size, age and whether a live process has
them open.  Looking opens nothing and changes nothing.

``--json``: ``{"buses": [{"name", "path", "created_ns", "in_use", "bytes",
"topics": [{"name", "partitions", "bytes", "created_ns", "in_use"}]}]}``;
``created_ns`` is null when unknown (a marker or metadata segment missing),
``in_use`` when a segment may not be trusted (another user's, say)."""
import argparse
import json
import os
import time
from typing import Any, Dict, Optional

from rich.console import Console
from rich.table import Table

from .. import _names, _reclaim, _segment
from .common import add_path, bus_directory, memory_buses, size_text


def add_parser(sub: "argparse._SubParsersAction", name: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help="buses and topics on this host, with size and age")
    p.add_argument("--json", action="store_true", help="print JSON only")
    add_path(p)
    return p


def run(args: argparse.Namespace) -> int:
    directory = bus_directory(args.path)
    buses = [_bus(directory, name, args.path) for name in memory_buses(directory)]
    if args.json:
        print(json.dumps({"buses": buses}, indent=2, sort_keys=True))
        return 0
    console = Console()
    if not buses:
        console.print("no buses" + (f" in {directory}" if args.path else ""))
        return 0
    t = Table("bus / topic", "partitions", "size", "age", "in use", box=None, padding=(0, 2))
    now = time.time_ns()
    for b in buses:
        t.add_row(f"[bold]{b['name']}[/]", "", size_text(b["bytes"]), _age(now, b["created_ns"]),
                  _yes(b["in_use"]))
        for tp in b["topics"]:
            t.add_row(f"  {tp['name']}", str(tp["partitions"]), size_text(tp["bytes"]),
                      _age(now, tp["created_ns"]), _yes(tp["in_use"]))
    console.print(t)
    return 0


def _bus(directory: str, name: str, path: Optional[str]) -> Dict[str, Any]:
    marker = _names.bus_segment(name)
    topics = [_topic(directory, name, t) for t in _reclaim.topics(directory, name)]
    names = _reclaim.segments(directory, name)
    return {"name": name, "path": path, "created_ns": _created(directory, marker),
            "in_use": _in_use(directory, marker) or any(t["in_use"] for t in topics),
            "bytes": _reclaim.size(directory, names), "topics": topics}


def _topic(directory: str, bus: str, topic: str) -> Dict[str, Any]:
    meta = _names.meta_segment(bus, topic)
    names = [n for n in _reclaim.segments(directory, bus) if _names.parse_segment(n)[1] == topic]
    return {"name": topic, "partitions": sum(1 for n in names if n != meta),
            "bytes": _reclaim.size(directory, names), "created_ns": _created(directory, meta),
            "in_use": _in_use(directory, meta)}


def _in_use(directory: str, name: str) -> Optional[bool]:
    """None when the segment may not be trusted (see ``shmbus stat``)."""
    try:
        return _reclaim.in_use(directory, name)
    except PermissionError:
        return None


def _created(directory: str, name: str) -> Optional[int]:
    try:
        fd = _segment.open_fd(directory, name)
    except (FileNotFoundError, PermissionError):
        return None
    try:
        return _segment.created(fd) or None
    finally:
        os.close(fd)


def _yes(flag: Optional[bool]) -> str:
    return "?" if flag is None else "yes" if flag else "no"


def _age(now: int, created: Optional[int]) -> str:
    if not created:
        return "?"
    s = max(0, (now - created) // 10**9)
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m"
    if s < 172800:
        return f"{s // 3600}h"
    return f"{s // 86400}d"
