"""What a disk bus costs: 1 KiB messages from one producer process to one
consumer process on a memory bus and on a disk bus with each fsync policy
(never, batch, always), interleaved (memory, never, batch, always, memory, ...)
so that the ratios hold on a noisy machine; medians with the spread (max - min
over median).  Same harness as bench_core.py (every message checked).
``always`` syncs once per send: it runs fewer messages.

    python benchmarks/bench_disk.py [--reps 5] [--messages 200000] [--dir DIR]
"""
import argparse
import os
import shutil
import sys
import tempfile
import uuid

import shmbus

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_core import _pair, check, payload, summary  # noqa: E402
from machine import describe  # noqa: E402

SIZE = 1024
POLICIES = ["memory", "never", "batch", "always"]


def send(name, path, n, size, ready, go):
    with shmbus.Bus(name, path=path) as bus, bus.producer("t") as p:
        middle = b"\0" * (size - 16)
        ready.set()
        go.wait(60)
        for s in range(n):
            p.send(payload(s, middle))


def receive(name, path, n, size, ready, results):
    import time
    with shmbus.Bus(name, path=path) as bus, bus.consumer("t") as c:
        ready.set()
        bad = got = 0
        t0 = None
        while got < n:
            msgs = c.poll_batch(1000, timeout=30)
            if not msgs:
                break
            if t0 is None:
                t0 = time.perf_counter()
            for m in msgs:
                bad += not check(m.value, got, size)
                got += 1
        results.put((t0, time.perf_counter(), got, bad))


def run(policy, n, root):
    name = f"bench-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    path = None if policy == "memory" else os.path.join(root, name)
    bus = shmbus.Bus(name, path=path)
    try:
        bus.create_topic("t", capacity=16 * 2**20, max_message_size=SIZE,
                         **({} if policy == "memory" else {"fsync": policy}))
        return _pair(send, (name, path, n, SIZE), receive, (name, path, n, SIZE))
    finally:
        bus.unlink()
        bus.close()


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
