"""``shmbus top [BUS]``: a live view of a bus's topics (every memory bus's
without BUS), refreshed every ``--interval`` seconds; ``q`` or Ctrl-C quits.

One row per topic (msgs/s, MB/s, published, lag, pending, fill, producers,
drops) and an indented row per group (msgs/s delivered, lag, pending, live
members, redeliveries and dead letters per second), with a row for each dead
member still holding deliveries (red) and each stalled one (yellow).  The
topics' health problems are listed at the foot, most serious first.  Made for
80x24; rows and problems beyond the screen are counted, not shown.

``top`` needs a terminal: when stdout is not one it refuses with exit status 2
and suggests ``shmbus stat`` (one look, or ``--json``).  An unknown BUS exits 1
before the screen is taken.  ``--stall S`` sets after how many seconds without
a poll a live member of a lagging group counts as stalled (default 5).

:func:`render` (a report as a rich renderable, no terminal needed) is kept
apart from :func:`run`'s loop and :class:`Keys` (key presses, without waiting).
"""
import argparse
import os
import select
import signal
import sys
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from .._errors import ShmbusError
from . import report as _report
from .common import Usage, add_path, open_bus, target
from .report import Watcher
from .stat import bridge_line

MIN_WIDTH, MIN_HEIGHT = 40, 10
NOTE_LOOKS = 5  # how many refreshes a "bus X was removed" note stays


def add_parser(sub: "argparse._SubParsersAction", name: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help="live view of topics, groups, rates and problems; q quits")
    p.add_argument("bus", nargs="?", metavar="BUS", help="a bus (default: every memory bus)")
    p.add_argument("--interval", type=float, default=1.0, metavar="S",
                   help="seconds between refreshes (default 1.0)")
    p.add_argument("--stall", type=float, default=_report.STALL_SECONDS, metavar="S",
                   help="a live member of a lagging group that has not polled for S seconds "
                        f"is stalled (default {_report.STALL_SECONDS:g})")
    add_path(p)
    return p


# -- (a) a report as a renderable ----------------------------------------------------

def _num(x: float) -> str:
    """A count or rate in at most 6 characters: 7, 2.5, 950, 12.3k, 4.1M."""
    for div, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if x >= div:
            v = x / div
            return f"{v:.1f}{unit}" if v < 100 else f"{v:.0f}{unit}"
    return f"{x:.1f}" if 0 < x < 10 and x != int(x) else f"{x:.0f}"


def _mb(bytes_per_s: float) -> str:
    mb = bytes_per_s / 1e6
    return f"{mb:.2f}" if mb < 10 else f"{mb:.1f}" if mb < 100 else f"{mb:.0f}"


Row = Tuple[List[str], str]  # cells (just one: a line of its own), style


def _topic_rows(name: str, label: str, t: Dict[str, Any],
                problems: List[Tuple[int, str, str]]) -> List[Row]:
    """A topic's row, its groups' rows and its problem members' rows; its
    problems appended to ``problems`` as (rank, "label: text", style)."""
    if "config" not in t:  # damaged, not ours to read, or removed meanwhile
        msg = t.get("damaged") or t.get("missing") or "unreadable"
        problems.append((0, f"{label}: {msg}", "red"))
        return [([f" {name}", "", "", "", "", "", "", "", "damaged" if "damaged" in t else "gone"],
                 "red")]
    for p in t["health"]["problems"]:
        rank = _report.PROBLEMS.index(p["kind"])
        problems.append((rank, f"{label}: {p['text']}", "red" if rank < 3 else "yellow"))
    r = t["rates"]
    parts = t["partitions"]
    fill = max((p["fill"] for p in parts), default=0.0)
    drops = sum(p[k] for p in parts for k in _report.DROP_COUNTERS)
    flags = ""
    style = ""
    if r is not None and r["dropped"] > 0:
        flags, style = f"drop {_num(r['dropped'])}/s", "red"
    elif drops:
        flags, style = f"drops {_num(drops)}", "yellow"
    rows: List[Row] = [([f" {name}", "-" if r is None else _num(r["messages"]),
                         "-" if r is None else _mb(r["bytes"]),
                         _num(sum(p["published"] for p in parts)), "", "", f"{fill:.0%}",
                         f"{len(t['producers'])}p", flags], style)]
    for g in t["groups"]:
        gr = g.get("rates")
        flags, style = [], ""
        if gr and gr["redelivered"] > 0:
            flags.append(f"redeliv {_num(gr['redelivered'])}/s")
            style = "yellow"
        if gr and gr["dead_lettered"] > 0:
            flags.append(f"dlq {_num(gr['dead_lettered'])}/s")
            style = "red"
        if not g["private"] and g["lag"] > 0 and g["live_members"] == 0:
            flags.append("no member")
            style = style or "yellow"
        rows.append(([f"   {g['name'] or '(private)'}", "-" if gr is None else _num(gr["delivered"]),
                      "", "", _num(g["lag"]), _num(g["pending"]), "", f"{g['live_members']}",
                      " ".join(flags)], style))
        for m in g["members"]:
            if not m["alive"] and (m["pending"] or m["owned"]):
                rows.append(([f"     pid {m['pid']}", "", "", "", "", _num(m["pending"]), "", "",
                              "DEAD"], "bold red"))
            elif m["stalled"]:
                rows.append(([f"     pid {m['pid']}", "", "", "", "", _num(m["pending"]), "", "",
                              f"stalled {m['idle_seconds']:.0f}s"], "yellow"))
    return rows


def _table(header: bool) -> Table:
    """The table's columns for 80 columns and more (the same in every part)."""
    table = Table(box=None, padding=(0, 1, 0, 0), pad_edge=False, expand=True, show_edge=False,
                  show_header=header, header_style="bold reverse")
    table.add_column("topic/group", ratio=3, min_width=12, no_wrap=True, overflow="ellipsis")
    for col, w in (("msgs/s", 6), ("MB/s", 5), ("publ.", 6), ("lag", 6), ("pend.", 6),
                   ("fill", 4), ("prod/mem", 8)):
        table.add_column(col, width=w, justify="right", no_wrap=True, overflow="ellipsis")
    table.add_column("flags", ratio=2, min_width=6, no_wrap=True, overflow="ellipsis")
    return table


def render(report: Dict[str, Any], width: int, height: int,
           notes: Sequence[str] = ()) -> RenderableType:
    """The screen for ``report`` (a :meth:`Watcher.look`) at ``width`` x ``height``:
    a header, ``notes`` (one line), the table cut to the height (saying how many
    rows are left out) and the problems, most serious first, in the lines left."""
    if width < MIN_WIDTH or height < MIN_HEIGHT:
        return Text(f"terminal too small ({width}x{height}); need {MIN_WIDTH}x{MIN_HEIGHT}")
    buses = report["buses"]
    rows: List[Row] = []
    problems: List[Tuple[int, str, str]] = []
    for bname, b in buses.items():
        if "error" in b:
            rows.append(([f"{bname}: {b['error']}"], "bold red"))  # gone, or not ours to read
            continue
        rows.append(([bname + ("" if b["topics"] else ": no topics")], "bold"))
        for tname, t in b["topics"].items():
            label = tname if len(buses) == 1 else f"{bname}/{tname}"  # in the footer
            rows.extend(_topic_rows(tname, label, t, problems))
        for r in b.get("bridges", []):
            rows.append(([bridge_line(r)], "yellow" if r["running"] and not r["connected"] else ""))
    problems.sort(key=lambda p: p[0])

    clock = time.strftime("%H:%M:%S", time.localtime(report["taken_ns"] / 1e9))
    header = Text.assemble(("shmbus top", "bold"), f"  {clock}  {len(buses)} bus"
                           f"{'' if len(buses) == 1 else 'es'}  ", ("q quits", "dim"))
    lines: List[RenderableType] = [header]
    if notes:
        lines.append(Text("; ".join(notes), style="bold yellow"))
    space = height - len(lines) - 1  # the table's own header line
    # rows come first, but the problems keep at least a third of the space
    keep = min(len(problems), max(1, space // 3))
    shown = rows
    if len(rows) > space - keep:
        shown = rows[:max(0, space - keep - 1)]
        shown.append(([f"… {len(rows) - len(shown)} more rows"], "dim"))

    lines.append(_table(header=True))
    table = None
    for cells, style in shown:
        if len(cells) == 1:  # a line of its own (a bus, "… more rows"), not cut to a column
            lines.append(Text(cells[0], style=style, no_wrap=True, overflow="ellipsis"))
            table = None
            continue
        if table is None:
            table = _table(header=False)
            lines.append(table)
        table.add_row(*cells, style=style)

    room = space - len(shown)
    if len(problems) > room:
        cut = max(0, room - 1)
        extra = len(problems) - cut
        problems = problems[:cut] + [(0, f"… {extra} more problem{'s' if extra > 1 else ''}", "dim")]
    for _, text, style in problems:
        lines.append(Text(f"! {text}" if style != "dim" else text, style=style,
                          no_wrap=True, overflow="ellipsis"))
    return Group(*lines)


# -- (b) the loop --------------------------------------------------------------------

class Keys:
    """Key presses on stdin without waiting for Enter (cbreak mode: Ctrl-C still
    interrupts), the terminal's settings restored on exit.  Without a terminal
    on stdin it only sleeps."""

    def __init__(self) -> None:
        self.fd = sys.stdin.fileno() if sys.stdin is not None and sys.stdin.isatty() else None
        self.saved: Optional[list] = None

    def __enter__(self) -> "Keys":
        if self.fd is not None:
            import termios
            import tty
            self.saved = termios.tcgetattr(self.fd)
            tty.setcbreak(self.fd)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.saved is not None:
            import termios
            termios.tcsetattr(self.fd, termios.TCSADRAIN, self.saved)

    def read(self, timeout: float) -> str:
        """What was typed within ``timeout`` seconds ('' if nothing)."""
        if self.fd is None:
            time.sleep(timeout)
            return ""
        ready, _, _ = select.select([self.fd], [], [], max(0.0, timeout))
        return os.read(self.fd, 64).decode(errors="replace") if ready else ""


def _terminate(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally blocks: terminal restored


def run(args: argparse.Namespace) -> int:
    if args.interval <= 0 or args.stall < 0:
        raise Usage("--interval must be > 0 and --stall >= 0")
    bus = target(args.bus)[0] if args.bus else None
    if bus is None and args.path is not None:
        raise Usage("--path needs a BUS")
    if not sys.stdout.isatty():
        raise Usage("needs a terminal; 'shmbus stat' shows one look (or --json)")
    if bus is not None:
        open_bus(bus, args.path).close()  # exit 1 at once if it does not exist
    watcher = Watcher(None if bus is None else [bus], args.path, stall_seconds=args.stall)
    console = Console()
    notes: Dict[str, int] = {}  # bus -> looks left to say it was removed
    old_term = signal.signal(signal.SIGTERM, _terminate)
    try:
        with Keys() as keys, Live(console=console, screen=True, auto_refresh=False) as live:
            while True:
                try:
                    report = watcher.look()
                except (ShmbusError, OSError) as e:  # a bus changing under our feet: next time
                    report = {"taken_ns": time.time_ns(), "buses": {}}
                    said = [f"look failed: {e}"]
                else:
                    for name in watcher.gone:
                        notes[name] = NOTE_LOOKS
                    said = [f"bus {n} was removed" for n in notes]
                notes = {n: k - 1 for n, k in notes.items() if k > 1}
                w, h = console.size
                live.update(render(report, w, h, said), refresh=True)
                deadline = time.monotonic() + args.interval
                while (left := deadline - time.monotonic()) > 0:
                    if "q" in keys.read(left).lower():
                        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        signal.signal(signal.SIGTERM, old_term)
        watcher.close()
