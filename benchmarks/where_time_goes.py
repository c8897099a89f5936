"""Where the time of one 64-byte message goes, step by step, in one process.

Each line is the median over several runs of the cost per message of one step of
the per-message path, so that the throughput of the 1 -> 1 benchmark can be read
against its parts: the C core alone, the crossing into C, the Python around it,
and the benchmark's own stamping and checking.

    python benchmarks/where_time_goes.py
"""
import os
import statistics
import sys
import time
import uuid

import shmbus
from shmbus._native import lib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import floors  # noqa: E402
import workloads  # noqa: E402

N = 20_000


def per_message(fn, setup=None, reps=7):
    runs = []
    for _ in range(reps):
        if setup:
            setup()
        t = time.perf_counter()
        fn()
        runs.append((time.perf_counter() - t) / N * 1e9)
    return statistics.median(runs)


def suite_loops():
    """The suite's own 1 -> 1 send and receive loops with the shmbus adapter, each
    alone in this process: what one message costs each side of the pipeline."""
    import threading
    from dataclasses import replace
    from peers import shmbus_bus
    w = workloads.Workload("1to1", "bytes", 64, N)
    channel = shmbus_bus.open(w, capacity=1 << 24, max_messages=1 << 16)
    try:
        rcv = shmbus_bus.receiver(channel, replace(w, timeout=0.1), 0)
        snd = shmbus_bus.sender(channel, w, 0)
        stop = threading.Event()
        sends, receives = [], []
        for _ in range(7):
            t = time.perf_counter()
            workloads.send_loop(snd, w, 0)
            sends.append((time.perf_counter() - t) / N * 1e9)
            t = time.perf_counter()
            got = workloads.receive_loop(rcv, w, stop)["got"]
            receives.append((time.perf_counter() - t) / N * 1e9)
            assert got == N, got
        snd.close()
        rcv.close()
    finally:
        shmbus_bus.close(channel)
    return [("suite: send loop, shmbus adapter (stamp + send)", statistics.median(sends)),
            ("suite: receive loop, shmbus adapter (poll + value + check)", statistics.median(receives))]


def main() -> None:
    name = f"where-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    bus = shmbus.Bus(name)
    try:
        bus.create_topic("t", capacity=1 << 24, max_messages=1 << 16)
        p = bus.producer("t")
        c = bus.consumer("t")
        v = b"x" * 64
        make, unpack = workloads.payload_maker(64), workloads.stamps_of(64)
        h = p._h
        send_value = lib.shmbus_send_value

        def drain():
            while c.poll_batch(65536, timeout=0):
                pass

        def fill():
            drain()
            for _ in range(N):
                p.send(v)

        def loop_raw_send():
            for _ in range(N):
                send_value(h, 0, v, 64)

        def loop_send():
            send = p.send
            for _ in range(N):
                send(v)

        def loop_poll():
            poll = c.poll
            for _ in range(N):
                poll(0)

        def loop_poll_value():
            poll = c.poll
            for _ in range(N):
                poll(0).value

        def loop_payload():
            for s in range(N):
                make(s)

        def loop_check():
            for s in range(N):
                a, b = unpack(v)
                a != b or a < s

        def loop_empty():
            for _ in range(N):
                pass

        rows = [
            ("C core alone (send + poll, one thread)", floors.c_ring()),
            ("empty Python loop", per_message(loop_empty)),
            ("cffi call shmbus_send_value (C included)", per_message(loop_raw_send, drain)),
            ("Producer.send(bytes)", per_message(loop_send, drain)),
            (f"Consumer.poll() (fetches {shmbus._consumer.PREFETCH} per C call)", per_message(loop_poll, fill)),
            ("Consumer.poll().value", per_message(loop_poll_value, fill)),
            ("suite: stamp a fresh 64 B payload", per_message(loop_payload)),
            ("suite: read both stamps, compare", per_message(loop_check)),
        ]
        p.close()
        c.close()
    finally:
        bus.unlink()
        bus.close()
    rows += suite_loops()
    width = max(len(r[0]) for r in rows)
    for label, value in rows:
        shown = value if isinstance(value, str) else f"{value:7.0f} ns per message"
        print(f"{label:<{width}}  {shown}")


if __name__ == "__main__":
    sys.exit(main())
