"""First throughput and latency benchmark: shmbus beside multiprocessing.Queue.

Producer and consumer run in separate processes (spawn).  Every payload carries its
sequence number in its first and last 8 bytes, and the consumer checks both, for
every library alike.  Modes: "fresh bytes" (a new bytes object per message; the
consumer reads ``value``, a copy), "zero-copy" (shmbus only: the producer stamps one
reused buffer, copied once into the ring; the consumer checks ``view()``, no copy;
the Queue column repeats its fresh-bytes figure), "batch" (``send_many`` /
``poll_batch`` by 1000).  Runs are interleaved (shmbus,
Queue, shmbus, Queue, ...) so that ratios hold on a noisy machine; the table shows
medians with the spread (max - min, as % of the median).

    python benchmarks/bench_core.py [--reps 3] [--quick] [--json FILE]
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
import floors  # noqa: E402
from machine import describe  # noqa: E402
from children import reap  # noqa: E402

KiB, MiB = 1024, 1024 * 1024
SIZES = [64, KiB, 64 * KiB, MiB]
U64 = struct.Struct("<Q")
DEPTH = 1024  # queue depth in messages, capped at 64 MiB, as in PEERS.md


def payload(seq: int, middle: bytes) -> bytes:
    b = seq.to_bytes(8, "little")
    return b + middle + b


def check(v, seq: int, size: int) -> bool:
    return U64.unpack_from(v)[0] == seq and U64.unpack_from(v, size - 8)[0] == seq


# -- shmbus -----------------------------------------------------------------------

def shmbus_topic(bus: shmbus.Bus, name: str, size: int, retention: str = "consumed") -> None:
    cap = min(DEPTH * (size + 8), 64 * MiB)
    bus.create_topic(name, capacity=cap, max_message_size=size, retention=retention,
                     max_messages=max(16, min(DEPTH, cap // size)))


def shmbus_send(bus_name, size, n, ready, go, batch, reuse):
    with shmbus.Bus(bus_name) as bus, bus.producer("t") as p:
        middle = b"\0" * (size - 16)
        ready.set()
        go.wait(60)
        if batch:
            for start in range(0, n, batch):
                p.send_many([payload(s, middle) for s in range(start, min(n, start + batch))])
        elif reuse:  # zero-copy mode: one buffer stamped in place, copied once into the ring
            buf = bytearray(size)
            send = p.send
            for s in range(n):
                U64.pack_into(buf, 0, s)
                U64.pack_into(buf, size - 8, s)
                send(buf)
        else:
            send = p.send
            for s in range(n):
                send(payload(s, middle))


def shmbus_receive(bus_name, size, n, ready, results, view, batch):
    with shmbus.Bus(bus_name) as bus, bus.consumer("t") as c:
        ready.set()
        bad = 0
        t0 = None
        if batch:
            s = 0
            while s < n:
                msgs = c.poll_batch(batch, timeout=30)
                if not msgs:
                    break
                if t0 is None:
                    t0 = time.perf_counter()
                for m in msgs:
                    bad += not check(m.value, s, size)
                    s += 1
            got = s
        else:
            poll = c.poll
            got = 0
            for s in range(n):
                m = poll(30)
                if m is None:
                    break
                if t0 is None:
                    t0 = time.perf_counter()
                v = m.view() if view else m.value
                bad += not check(v, s, size)
                got += 1
        results.put((t0, time.perf_counter(), got, bad))


def run_shmbus(size, n, view=False, batch=0, retention="consumed"):
    name = f"bench-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    bus = shmbus.Bus(name)
    try:
        shmbus_topic(bus, "t", size, retention)
        return _pair(shmbus_send, (name, size, n), shmbus_receive, (name, size, n),
                     send_extra=(batch, view), receive_extra=(view, batch))
    finally:
        bus.unlink()
        bus.close()


# -- multiprocessing.Queue --------------------------------------------------------

def queue_send(q, size, n, ready, go):
    middle = b"\0" * (size - 16)
    ready.set()
    go.wait(60)
    for s in range(n):
        q.put(payload(s, middle))


def queue_receive(q, size, n, ready, results):
    ready.set()
    bad = got = 0
    t0 = None
    for s in range(n):
        v = q.get(timeout=30)
        if t0 is None:
            t0 = time.perf_counter()
        bad += not check(v, s, size)
        got += 1
    results.put((t0, time.perf_counter(), got, bad))


def run_queue(size, n):
    ctx = mp.get_context("spawn")
    q = ctx.Queue(maxsize=max(1, min(DEPTH, 64 * MiB // size)))
    return _pair(queue_send, (q, size, n), queue_receive, (q, size, n))


# -- the harness ------------------------------------------------------------------

def _pair(sender, sargs, receiver, rargs, send_extra=(), receive_extra=()):
    """Start receiver then sender, release them together, return msgs/s."""
    ctx = mp.get_context("spawn")
    ready_r, ready_s, go = ctx.Event(), ctx.Event(), ctx.Event()
    results = ctx.Queue()
    r = ctx.Process(target=receiver, args=rargs + (ready_r, results) + receive_extra)
    s = ctx.Process(target=sender, args=sargs + (ready_s, go) + send_extra)
    r.start()
    try:
        _wait_ready(ready_r, r, "receiver")
        s.start()
        _wait_ready(ready_s, s, "sender")
        go.set()
        t0, t1, got, bad = _result(results, (r, s))
        n = rargs[2]
        if got != n or bad:
            raise RuntimeError(f"{receiver.__name__}: got {got} of {n}, {bad} corrupt")
        return (n - 1) / (t1 - t0)
    finally:
        reap((s, r), 60)


def _result(results, procs, timeout=600):
    """The one result the children put, failing fast if they die without it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            return results.get(timeout=0.5)
        except queue.Empty:
            if any(p.exitcode not in (None, 0) for p in procs):
                raise RuntimeError("a benchmark process failed: exit codes "
                                   + ", ".join(str(p.exitcode) for p in procs)) from None
    raise RuntimeError("no result within the timeout")


def _wait_ready(event, proc, what):
    deadline = time.monotonic() + 60
    while not event.wait(0.1):
        if not proc.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the {what} process did not start (exit code {proc.exitcode})")


# -- round trip -------------------------------------------------------------------

def shmbus_pong(bus_name, spin, n, ready):
    with shmbus.Bus(bus_name) as bus, bus.consumer("ping", spin=spin) as c, bus.producer("pong") as p:
        ready.set()
        for _ in range(n):
            m = c.poll(30)
            p.send(m.value)


def _ping(send, receive, n, ready, results):
    """Send, wait for the answer, n times; report each round trip in ns."""
    ready.wait(60)
    lat = []
    msg = b"x" * 64
    clock = time.perf_counter_ns
    for _ in range(n):
        t = clock()
        send(msg)
        receive()
        lat.append(clock() - t)
    results.put(lat)


def shmbus_ping(bus_name, spin, n, ready, results):
    with shmbus.Bus(bus_name) as bus, bus.consumer("pong", spin=spin) as c, bus.producer("ping") as p:
        _ping(p.send, lambda: c.poll(30), n, ready, results)


def queue_pong(qa, qb, n, ready):
    ready.set()
    for _ in range(n):
        qb.put(qa.get(timeout=30))


def queue_ping(qa, qb, n, ready, results):
    _ping(qa.put, lambda: qb.get(timeout=30), n, ready, results)


def round_trip(kind, n, spin=0.0):
    ctx = mp.get_context("spawn")
    ready = ctx.Event()
    results = ctx.Queue()
    if kind == "shmbus":
        name = f"bench-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        bus = shmbus.Bus(name)
        bus.create_topic("ping", capacity=MiB)
        bus.create_topic("pong", capacity=MiB)
        procs = [ctx.Process(target=shmbus_pong, args=(name, spin, n, ready)),
                 ctx.Process(target=shmbus_ping, args=(name, spin, n, ready, results))]
    else:
        bus = None
        qa, qb = ctx.Queue(), ctx.Queue()
        procs = [ctx.Process(target=queue_pong, args=(qa, qb, n, ready)),
                 ctx.Process(target=queue_ping, args=(qa, qb, n, ready, results))]
    try:
        for p in procs:
            p.start()
        lat = sorted(_result(results, procs)[n // 10:])  # the first tenth warms up
        q = lambda f: lat[min(len(lat) - 1, int(f * len(lat)))] / 1000.0
        return {"p50": q(0.50), "p99": q(0.99), "p999": q(0.999)}
    finally:
        reap(procs, 60)
        if bus is not None:
            bus.unlink()
            bus.close()


# -- report -----------------------------------------------------------------------

def summary(values):
    med = statistics.median(values)
    spread = (max(values) - min(values)) / med * 100 if med else 0.0
    return {"median": med, "spread_pct": spread, "runs": values}


def fmt_rate(r, size):
    mb = r * size / 1e6
    rate = f"{r / 1e6:.2f} M" if r >= 1e6 else f"{r / 1e3:.1f} k"
    return f"{rate} ({mb:,.0f} MB/s)" if size >= KiB else rate


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="fewer messages, one repetition")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--only", nargs="*", metavar="SIZE:MODE",
                    help="run only these throughput rows, e.g. 64:value 65536:view 64:batch; "
                         "no round trip")
    args = ap.parse_args(argv)
    reps = 1 if args.quick else args.reps
    scale = 0.2 if args.quick else 1.0
    counts = {64: 1_000_000, KiB: 500_000, 64 * KiB: 40_000, MiB: 2_000}
    qcounts = {64: 150_000, KiB: 150_000, 64 * KiB: 15_000, MiB: 400}

    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    console = Console()
    machine = describe()
    rows = []
    plan = [(s, "value") for s in SIZES] + [(64 * KiB, "view"), (MiB, "view"), (64, "batch")]
    if args.only is not None:
        plan = [(int(x.split(":")[0]), x.split(":")[1]) for x in args.only]
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("benchmark", total=len(plan) * reps * 2 + 4)
        for size, mode in plan:
            n = max(100, int(counts[size] * scale))
            qn = max(100, int(qcounts[size] * scale))
            a, b = [], []
            for _ in range(reps):  # interleaved: A B A B
                a.append(run_shmbus(size, n, view=mode == "view", batch=1000 if mode == "batch" else 0))
                progress.advance(task)
                b.append(run_queue(size, qn))
                progress.advance(task)
            rows.append({"size": size, "mode": mode, "shmbus": summary(a), "queue": summary(b)})
        rt_n = 3000 if args.quick else 20000
        latency = {}
        if args.only is None:
            for label, kind, n, spin in (
                    ("shmbus, spinning", "shmbus", rt_n, 1.0),
                    ("shmbus, default (spins 50 µs, then sleeps)", "shmbus", rt_n // 2, 50e-6),
                    ("shmbus, blocking (sleeps at once)", "shmbus", rt_n // 2, 0.0),
                    ("multiprocessing.Queue", "queue", rt_n // 2, 0.0)):
                latency[label] = round_trip(kind, n, spin=spin)
                progress.advance(task)

    table = Table(title="1 producer -> 1 consumer, separate processes, every message verified")
    for col in ("size", "mode", "shmbus msgs/s", "spread", "mp.Queue msgs/s", "spread", "ratio"):
        table.add_column(col, justify="right")
    for r in rows:
        sm, qm = r["shmbus"]["median"], r["queue"]["median"]
        table.add_row(_size(r["size"]), {"value": "fresh bytes", "view": "zero-copy",
                                         "batch": "send_many/poll_batch"}[r["mode"]],
                      fmt_rate(sm, r["size"]), f"{r['shmbus']['spread_pct']:.0f} %",
                      fmt_rate(qm, r["size"]), f"{r['queue']['spread_pct']:.0f} %", f"{sm / qm:.1f}x")
    console.print(table)
    lt = Table(title="Round trip, 64 B ping-pong (µs)")
    for col in ("library", "p50", "p99", "p99.9"):
        lt.add_column(col, justify="right")
    for k, v in latency.items():
        lt.add_row(k, f"{v['p50']:.1f}", f"{v['p99']:.1f}", f"{v['p999']:.1f}")
    if latency:
        console.print(lt)
    floor = floors.report()
    for label, text in floor:
        console.print(f"floor, {label}: {text}")
    console.print("machine: " + ", ".join(f"{k} {v}" for k, v in machine.items()))
    console.print(f"repetitions: {reps}, interleaved; command: python benchmarks/bench_core.py "
                  + " ".join(argv if argv is not None else sys.argv[1:]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine, "throughput": rows, "round_trip_us": latency,
                       "floors": dict(floor)}, f, indent=2)


def _size(n):
    return f"{n // MiB} MiB" if n >= MiB else f"{n // KiB} KiB" if n >= KiB else f"{n} B"


if __name__ == "__main__":
    main()
