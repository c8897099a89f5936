"""Where the time of one 64-byte message goes, step by step, in one process.

Each line is the median over several runs of the cost per message of one step of
the per-message path, so that the throughput of the 1 -> 1 benchmark can be read
against its parts: the C core alone, the crossing into C, the Python around it,
and the benchmark's own stamping and checking.

    python benchmarks/where_time_goes.py
"""
import os
import statistics
import struct
import sys
import time
import uuid

import shmbus
from shmbus._native import lib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import floors  # noqa: E402

N = 20_000
U64 = struct.Struct("<Q")


def per_message(fn, setup=None, reps=7):
    runs = []
    for _ in range(reps):
        if setup:
            setup()
        t = time.perf_counter()
        fn()
        runs.append((time.perf_counter() - t) / N * 1e9)
    return statistics.median(runs)


def main() -> None:
    name = f"where-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    bus = shmbus.Bus(name)
    try:
        bus.create_topic("t", capacity=1 << 24, max_messages=1 << 16)
        p = bus.producer("t")
        c = bus.consumer("t")
        v = b"x" * 64
        middle = b"\0" * 48
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
                b = s.to_bytes(8, "little")
                b + middle + b

        def loop_check():
            for s in range(N):
                U64.unpack_from(v)[0] == s and U64.unpack_from(v, 56)[0] == s

        def loop_empty():
            for _ in range(N):
                pass

        rows = [
            ("C core alone (send + poll, one thread)", floors.c_ring()),
            ("empty Python loop", per_message(loop_empty)),
            ("cffi call shmbus_send_value (C included)", per_message(loop_raw_send, drain)),
            ("Producer.send(bytes)", per_message(loop_send, drain)),
            ("Consumer.poll() (fetches 64 per C call)", per_message(loop_poll, fill)),
            ("Consumer.poll().value", per_message(loop_poll_value, fill)),
            ("benchmark: stamp a fresh 64 B payload", per_message(loop_payload)),
            ("benchmark: check sequence at both ends", per_message(loop_check)),
        ]
        p.close()
        c.close()
    finally:
        bus.unlink()
        bus.close()
    width = max(len(r[0]) for r in rows)
    for label, value in rows:
        shown = value if isinstance(value, str) else f"{value:7.0f} ns per message"
        print(f"{label:<{width}}  {shown}")


if __name__ == "__main__":
    sys.exit(main())
