"""shmbus beside the IPC libraries a Python user picks today, side by side in one
run: producers and consumers in separate processes (spawn), every message
checked (a stamp in its first and last 8 bytes), queue depth min(1024 messages,
64 MiB), the peers interleaved (A B C A B C ...) so that ratios hold on a noisy
machine.  Medians with the spread (max - min over the median); a peer that loses,
duplicates, reorders or corrupts messages is reported as failing, never as fast.

Workloads: 1 -> 1 fresh bytes at 64 B, 1 KiB, 64 KiB, 1 MiB; numpy arrays at
64 KiB, 1 MiB, 16 MiB; fan-out 1 -> 1, 2, 3 at 64 B and 1 -> 3 at 64 KiB; a
group of 2 competing consumers at 64 B; 4 producers -> 1 consumer at 64 B;
send_many/recv_many by 1000 at 64 B; columnar (2-D arrays, 4096 rows) at 64 B;
64 B ping-pong, spinning and blocking (p50, p99, p99.9).

--quick (under a minute on a 2-core machine): one repetition of about 0.3 s per
run, and only 1 -> 1 at 64 B and 64 KiB, numpy at 1 MiB, fan-out 1 -> 3 at 64 B,
batch, columnar and both ping-pongs.

    python benchmarks/suite.py [--quick] [--vs LIBS] [--reps N] [--only WORKLOADS]
                               [--json F] [--plot F.png]
"""
import argparse
import os
import shlex
import sys
import time
from typing import List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import harness  # noqa: E402
import machine  # noqa: E402
import peers  # noqa: E402
import report  # noqa: E402
from workloads import KiB, MiB, Workload  # noqa: E402


def plan() -> List[Workload]:
    """Every workload of the full run, in order (count is chosen per run)."""
    w = []
    w += [Workload("1to1", "bytes", s, 0) for s in (64, KiB, 64 * KiB, MiB)]
    w += [Workload("numpy", "numpy", s, 0) for s in (64 * KiB, MiB, 16 * MiB)]
    w += [Workload("fanout", "bytes", 64, 0, consumers=c, pattern="each") for c in (1, 2, 3)]
    w += [Workload("fanout", "bytes", 64 * KiB, 0, consumers=3, pattern="each")]
    w += [Workload("group", "bytes", 64, 0, consumers=2, pattern="share"),
          Workload("4to1", "bytes", 64, 0, producers=4),
          Workload("batch", "batch", 64, 0, batch=1000),
          Workload("columnar", "columnar", 64, 0, batch=4096),
          Workload("ping", "ping", 64, 0, spin=True),
          Workload("ping", "ping", 64, 0, spin=False)]
    return w


QUICK = {("1to1", 64), ("1to1", 64 * KiB), ("numpy", MiB), ("batch", 64), ("columnar", 64), ("ping", 64)}


def quick_plan() -> List[Workload]:
    return [w for w in plan() if (w.name, w.size) in QUICK
            or (w.name == "fanout" and w.size == 64 and w.consumers == 3)]


def select(ws: List[Workload], only: str) -> List[Workload]:
    """The workloads ``only`` names: NAME (e.g. 1to1, ping) or NAME:BYTES (1to1:65536)."""
    tokens = [t.strip() for t in only.split(",") if t.strip()]
    known = {w.name for w in ws} | {f"{w.name}:{w.size}" for w in ws}
    bad = [t for t in tokens if t not in known]
    if bad:
        raise SystemExit(f"suite: no workload {bad[0]!r}; workloads: "
                         + ", ".join(sorted({w.name for w in ws})) + " (or NAME:BYTES)")
    return [w for w in ws if w.name in tokens or f"{w.name}:{w.size}" in tokens]


def _parser(prog: str) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog=prog, description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="one repetition of ~0.3 s per run and fewer workloads (under a minute)")
    ap.add_argument("--vs", metavar="LIBS", default=None,
                    help="comma-separated peers to run beside shmbus (default: all), by "
                         "module, name or distribution: e.g. multiprocessing,pyzmq")
    ap.add_argument("--reps", type=int, default=None, help="repetitions (default 3; --quick 1)")
    ap.add_argument("--only", metavar="WORKLOADS", default=None,
                    help="comma-separated workloads: 1to1, numpy, fanout, group, 4to1, batch, "
                         "columnar, ping, or NAME:BYTES such as 1to1:65536")
    ap.add_argument("--json", metavar="F", help="write the results here (schema 1)")
    ap.add_argument("--plot", metavar="F.png", help="draw the plots here (plots.py)")
    # for tests: seconds a run aims at, an extra adapter by path, no floors, the deadline
    ap.add_argument("--seconds", type=float, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--peer-path", action="append", default=[], help=argparse.SUPPRESS)
    ap.add_argument("--no-floors", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--deadline", type=float, default=None, help=argparse.SUPPRESS)
    return ap


def main(argv: Optional[List[str]] = None, prog: str = "python benchmarks/suite.py") -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser(prog).parse_args(argv)
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(width=None if sys.stdout.isatty() else 150)
    started = time.monotonic()
    reps = args.reps or (1 if args.quick else 3)
    seconds = args.seconds or (0.3 if args.quick else 1.5)
    ws = quick_plan() if args.quick and not args.only else plan()
    if args.only:
        ws = select(ws, args.only)
    try:
        refs = peers.select(args.vs.split(",") if args.vs else [n for n in peers.names()])
    except ValueError as e:
        console.print(f"suite: {e}")
        return 2
    refs += [os.path.abspath(p) for p in args.peer_path]
    mods = {ref: peers.load(ref) for ref in refs}
    names = {ref: m.NAME for ref, m in mods.items()}

    pacer = harness.Pacer(seconds)
    # seconds before a run is called hung: many times what it aims at
    allowed = args.deadline or (6.0 if args.quick else max(10.0, 15 * seconds))
    columns = (TextColumn("{task.description:<40}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("starting", total=len(ws) * len(refs) * reps)

        def step(text: str, done: int) -> None:
            progress.update(task, description=text, advance=done)

        outcomes, skipped = harness.interleaved(ws, refs, reps, pacer, allowed, step)

    floors, floor_lines = _floors(args, console)
    command = " ".join([prog] + [shlex.quote(a) for a in argv])
    dists = ["shmbus", "cffi", "numpy"] + [m.DIST for m in mods.values() if getattr(m, "DIST", None)]
    doc = report.document(command, machine.describe(), machine.versions(dict.fromkeys(dists)),
                          outcomes, names, skipped, floors)
    report.print_tables(console, doc, ws)
    for label, text in floor_lines:
        console.print(f"floor, {label}: {text}")
    console.print("machine: " + ", ".join(f"{k} {v}" for k, v in doc["machine"].items()))
    console.print("versions: " + ", ".join(f"{k} {v}" for k, v in doc["versions"].items()))
    console.print(f"{reps} repetition(s), interleaved, about {seconds:g} s a run; "
                  f"took {time.monotonic() - started:.0f} s; command: {command}")
    if args.json:
        report.write_json(doc, args.json)
    if args.plot:
        _plot(doc, args.plot, console)
    return 0


def _floors(args: argparse.Namespace, console) -> tuple:
    """What floors.py measures, as (the JSON's dict, printed lines)."""
    if args.no_floors:
        return {}, []
    import floors
    try:
        if hasattr(floors, "measure"):
            d = floors.measure(args.quick)
            return d, list(floors.describe(d))
        lines = floors.report()
        return dict(lines), lines
    except Exception as e:  # noqa: BLE001 - the figures above still stand
        console.print(f"floors not measured: {type(e).__name__}: {e}")
        return {}, []


def _plot(doc: dict, path: str, console) -> None:
    try:
        import plots
    except ImportError:
        plots = None
    if plots is None or not hasattr(plots, "write"):
        console.print(f"no plot written to {path}: plots.py (plots.write) is not there yet")
        return
    plots.write(doc, path)
    console.print(f"plots: {path}")


if __name__ == "__main__":
    sys.exit(main())
