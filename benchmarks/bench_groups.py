"""Consumer-group throughput: a group of 2 member processes drains 64-byte
messages, with automatic acknowledgement and with manual acknowledgement (one ack
per message, or one per batch).

The topic (2 partitions) is filled first, so that the figure is the group's, not
the producer's; then both members start together and the clock runs from the
start signal to the last message either member receives.  Each member checks the
sequence number in every message and the parent checks that every message came
exactly once.  Read styles: "poll" (``poll()`` one message at a time, reading
``value``) and "batch" (``poll_batch(1000)``).  Modes are interleaved within each
repetition (A B C D, A B C D, ...) so that ratios hold on a noisy machine; the
table shows medians with the spread (max - min, as % of the median).

    python benchmarks/bench_groups.py [--reps 5] [--quick] [--ordering none|partition] [--json F]
"""
import argparse
import json
import multiprocessing as mp
import os
import queue
import statistics
import struct
import sys
import time
import uuid

import shmbus

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from machine import describe  # noqa: E402
from children import reap  # noqa: E402

SIZE = 64
PARTITIONS = 2
MEMBERS = 2
BATCH = 1000
U64 = struct.Struct("<Q")
MODES = {  # name: (ack, read style, ack style)
    "auto, poll": ("auto", "poll", None),
    "auto, batch": ("auto", "batch", None),
    "manual, poll + ack each": ("manual", "poll", "each"),
    "manual, batch + ack batch": ("manual", "batch", "batch"),
}


def member(bus_name, ack, read, ack_style, ordering, ready, go, results):
    total = count = 0
    with shmbus.Bus(bus_name) as bus, bus.consumer("t", group="g", ack=ack, ordering=ordering,
                                                   start="earliest") as c:
        ready.set()
        go.wait(60)
        last = time.monotonic()
        idle_since = None
        while True:
            if read == "poll":
                m = c.poll(0.05)
                msgs = [m] if m is not None else []
                if m is not None:
                    total += U64.unpack_from(m.value)[0]
                    if ack_style == "each":
                        c.ack(m)
            else:
                msgs = c.poll_batch(BATCH, timeout=0.05)
                for m in msgs:
                    total += U64.unpack_from(m.value)[0]
                if ack_style == "batch" and msgs:
                    c.ack(msgs)
            if msgs:
                count += len(msgs)
                last = time.monotonic()
                idle_since = None
            else:
                idle_since = idle_since or time.monotonic()
                if time.monotonic() - idle_since > 0.3:
                    break
    results.put((last, count, total))


def run(mode, n, ordering):
    ack, read, ack_style = MODES[mode]
    name = f"bench-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    bus = shmbus.Bus(name)
    ctx = mp.get_context("spawn")
    procs = []
    try:
        per = n // PARTITIONS
        bus.create_topic("t", partitions=PARTITIONS, capacity=per * SIZE * 2,
                         max_message_size=SIZE, max_messages=per * 2)
        with bus.producer("t") as p:
            seq = 0
            for i in range(PARTITIONS):
                for start in range(0, per, BATCH):
                    k = min(BATCH, per - start)
                    p.send_many([U64.pack(seq + j) + bytes(SIZE - 8) for j in range(k)], partition=i)
                    seq += k
        go, results = ctx.Event(), ctx.Queue()
        readies = []
        for _ in range(MEMBERS):
            ready = ctx.Event()
            pr = ctx.Process(target=member, args=(name, ack, read, ack_style, ordering, ready, go,
                                                  results))
            pr.start()
            procs.append(pr)
            readies.append(ready)
        for ready in readies:
            if not ready.wait(60):
                raise RuntimeError("a member did not start")
        t0 = time.monotonic()
        go.set()
        got = []
        for _ in range(MEMBERS):
            try:
                got.append(results.get(timeout=600))
            except queue.Empty:
                raise RuntimeError("a member did not report") from None
        count = sum(g[1] for g in got)
        total = sum(g[2] for g in got)
        if count != seq or total != seq * (seq - 1) // 2:
            raise RuntimeError(f"{mode}: {count} of {seq} messages, or duplicates")
        shares = sorted(g[1] / count for g in got)
        return seq / (max(g[0] for g in got) - t0), shares[0]
    finally:
        reap(procs, 30)
        bus.unlink()
        bus.close()


def summary(values):
    med = statistics.median(values)
    return {"median": med, "spread_pct": (max(values) - min(values)) / med * 100, "runs": values}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="fewer messages, one repetition")
    ap.add_argument("--messages", type=int, default=400_000)
    ap.add_argument("--ordering", choices=("none", "partition"), default="none")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)
    reps = 1 if args.quick else args.reps
    n = 100_000 if args.quick else args.messages

    from rich.console import Console
    from rich.table import Table

    console = Console()
    rates = {m: [] for m in MODES}
    least_share = {m: 1.0 for m in MODES}
    for r in range(reps):
        for mode in MODES:
            rate, share = run(mode, n, args.ordering)
            rates[mode].append(rate)
            least_share[mode] = min(least_share[mode], share)
            console.print(f"rep {r + 1}/{reps}  {mode:28s} {rate / 1e6:.2f} M msg/s", highlight=False)
    stats = {m: summary(v) for m, v in rates.items()}
    base_poll = stats["auto, poll"]["median"]
    base_batch = stats["auto, batch"]["median"]
    table = Table(title=f"group of {MEMBERS} members, {PARTITIONS} partitions, {SIZE} B, "
                        f"ordering={args.ordering!r}, {n:,} messages")
    for col in ("mode", "msgs/s (median)", "spread", "vs auto poll", "vs auto batch",
                "smaller share"):
        table.add_column(col, justify="left" if col == "mode" else "right")
    for m, s in stats.items():
        table.add_row(m, f"{s['median'] / 1e6:.2f} M", f"{s['spread_pct']:.0f}%",
                      f"{s['median'] / base_poll:.2f}x", f"{s['median'] / base_batch:.2f}x",
                      f"{least_share[m]:.0%}")
    console.print(table)
    machine = describe()
    console.print(", ".join(f"{k}: {v}" for k, v in machine.items()), highlight=False)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine, "ordering": args.ordering, "messages": n,
                       "results": stats, "smallest_share": least_share}, f, indent=2)


if __name__ == "__main__":
    main()
