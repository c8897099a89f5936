"""What log retention costs: 64-byte messages, one producer process and one
consumer process, on a topic with ``retention="consumed"`` and on one with
``retention="log"``, interleaved (consumed, log, consumed, log, ...) so that the
ratio holds on a noisy machine; medians with the spread (max - min over median).
The suite's harness and shmbus adapter (every message checked).

    python benchmarks/bench_retention.py [--reps 5] [--messages 1000000]
"""
import argparse
import functools
import os
import sys
from types import SimpleNamespace

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from machine import describe  # noqa: E402
from peers import shmbus_bus  # noqa: E402
from report import summary  # noqa: E402
from workloads import Workload  # noqa: E402


def run_shmbus(n: int, retention: str) -> float:
    """Messages/s of one run of ``n`` 64-byte messages on a topic with this retention."""
    variant = SimpleNamespace(REF="shmbus_bus", NAME=f"shmbus, retention={retention}",
                              open=functools.partial(shmbus_bus.open, retention=retention),
                              close=shmbus_bus.close)
    o = harness.run(variant, Workload("1to1", "bytes", 64, n), seconds_allowed=120)
    if o.failure:
        raise SystemExit(f"retention={retention}: {o.failure}")
    return o.rate


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--messages", type=int, default=1_000_000)
    args = ap.parse_args(argv)
    rates = {"consumed": [], "log": []}
    for r in range(args.reps):
        for retention in rates:
            rate = run_shmbus(args.messages, retention)
            rates[retention].append(rate)
            print(f"rep {r + 1}/{args.reps}  retention={retention:9s} {rate / 1e6:.2f} M msg/s",
                  flush=True)
    stats = {k: summary(v) for k, v in rates.items()}
    base = stats["consumed"]["median"]
    print("\n| retention | msgs/s (median) | spread | vs consumed |")
    print("|---|---|---|---|")
    for k, s in stats.items():
        print(f"| {k} | {s['median'] / 1e6:.2f} M | {s['spread_pct']:.0f} % | "
              f"{s['median'] / base:.2f}x |")
    print(", ".join(f"{k}: {v}" for k, v in describe().items()))


if __name__ == "__main__":
    main()
