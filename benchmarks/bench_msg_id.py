"""What a msg_id costs a producer: sends of 64-byte values in one process, plain,
with a new msg_id each (looked up, then entered in the partition's dedup table),
and with an id sent before (found: nothing published), interleaved (A B C A B C
...) so that the ratios hold on a noisy machine; medians with the spread (max -
min over the median).  The topic drops its oldest records (on_full="drop_oldest"),
so that no consumer is needed and the ring never blocks.

    python benchmarks/bench_msg_id.py [--reps 5] [--sends 200000]
"""
import argparse
import os
import statistics
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import shmbus  # noqa: E402
from machine import describe  # noqa: E402

VALUE = b"x" * 64


def run(bus: shmbus.Bus, kind: str, ids: list) -> float:
    """Sends per second of one run."""
    topic = f"t-{uuid.uuid4().hex[:8]}"
    bus.create_topic(topic, capacity=1 << 24, on_full="drop_oldest",
                     dedup_capacity=2 * len(ids))
    with bus.producer(topic) as p:
        send = p.send
        if kind == "duplicate":  # every id sent once before the clock starts
            for i in ids:
                send(VALUE, msg_id=i)
        t0 = time.perf_counter()
        if kind == "plain":
            for _ in ids:
                send(VALUE)
        else:
            for i in ids:
                send(VALUE, msg_id=i)
        seconds = time.perf_counter() - t0
    bus.delete_topic(topic)
    return len(ids) / seconds


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--sends", type=int, default=200_000)
    args = ap.parse_args(argv)
    ids = [f"order-{i}" for i in range(args.sends)]
    rates = {"plain": [], "new msg_id": [], "duplicate": []}
    with shmbus.Bus(f"bench-msg-id-{os.getpid()}") as bus:
        try:
            for r in range(args.reps):
                for kind in rates:
                    rates[kind].append(run(bus, kind, ids))
                print(f"rep {r + 1}/{args.reps}: " + ", ".join(
                    f"{k} {v[-1] / 1e3:.0f} k/s" for k, v in rates.items()), flush=True)
        finally:
            bus.unlink()
    base = statistics.median(rates["plain"])
    print("\n| send | sends/s (median) | spread | µs per send | vs plain |")
    print("|---|---|---|---|---|")
    for k, v in rates.items():
        med = statistics.median(v)
        print(f"| {k} | {med / 1e3:.0f} k | {(max(v) - min(v)) / med * 100:.0f} % | "
              f"{1e6 / med:.2f} | {med / base:.2f}x |")
    print(", ".join(f"{k}: {v}" for k, v in describe().items()))


if __name__ == "__main__":
    main()
