"""What a disk bus costs: 1 KiB messages from one producer process to one
consumer process on a memory bus and on a disk bus with each fsync policy
(never, batch, always), interleaved (memory, never, batch, always, memory, ...)
so that the ratios hold on a noisy machine; medians with the spread (max - min
over median).  The suite's harness and shmbus adapter (every message checked).
``always`` syncs once per send: it runs fewer messages.

    python benchmarks/bench_disk.py [--reps 5] [--messages 200000] [--dir DIR]
"""
import argparse
import functools
import os
import shutil
import sys
import tempfile
from types import SimpleNamespace

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from machine import describe  # noqa: E402
from peers import shmbus_bus  # noqa: E402
from report import summary  # noqa: E402
from workloads import Workload  # noqa: E402

SIZE = 1024
POLICIES = ["memory", "never", "batch", "always"]


def run(policy: str, n: int, root: str) -> float:
    """Messages/s of one run of ``n`` 1 KiB messages on a memory bus or a disk bus in
    ``root`` with this fsync policy."""
    disk = {} if policy == "memory" else {"path": root, "fsync": policy}
    variant = SimpleNamespace(REF="shmbus_bus", NAME=f"shmbus, {policy}",
                              open=functools.partial(shmbus_bus.open, capacity=16 * 2**20, **disk),
                              close=shmbus_bus.close)
    o = harness.run(variant, Workload("1to1", "bytes", SIZE, n), seconds_allowed=600)
    if o.failure:
        raise SystemExit(f"{policy}: {o.failure}")
    return o.rate


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--messages", type=int, default=200_000)
    ap.add_argument("--dir", default=None, help="where disk buses go (default: a temporary "
                    "directory on the file system of the system temporary directory)")
    args = ap.parse_args(argv)
    root = tempfile.mkdtemp(prefix="shmbus-bench-", dir=args.dir)
    rates = {p: [] for p in POLICIES}
    try:
        for r in range(args.reps):
            for policy in POLICIES:
                n = args.messages if policy != "always" else max(1000, args.messages // 50)
                rate = run(policy, n, root)
                rates[policy].append(rate)
                print(f"rep {r + 1}/{args.reps}  {policy:7s} {rate / 1e3:9.1f} k msg/s",
                      flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    stats = {k: summary(v) for k, v in rates.items()}
    base = stats["memory"]["median"]
    print(f"\n| bus (1 KiB messages) | msgs/s (median) | MB/s | spread | vs memory |")
    print("|---|---|---|---|---|")
    for k, s in stats.items():
        label = "memory (/dev/shm)" if k == "memory" else f"disk, fsync={k}"
        print(f"| {label} | {s['median'] / 1e3:.1f} k | {s['median'] * SIZE / 1e6:.0f} | "
              f"{s['spread_pct']:.0f} % | {s['median'] / base:.3f}x |")
    fs = os.statvfs(args.dir or tempfile.gettempdir())
    print(", ".join(f"{k}: {v}" for k, v in describe().items()),
          f"; disk dir on a file system of {fs.f_blocks * fs.f_frsize / 2**30:.0f} GiB")


if __name__ == "__main__":
    main()
