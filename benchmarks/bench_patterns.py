"""What the processing patterns cost, each measured on its own (medians of
``--reps`` runs with the spread, max - min over the median):

- TaskQueue: no-op tasks submitted by this process and run by 2 worker
  processes, submit to the last result (tasks/s, each with its 4 status events);
- Batcher: 64-byte messages drained by batches of 500, acked together
  (msgs/s; the topic filled first);
- Windows: events folded into 10-second tumbling windows, in one process
  (events/s; the logic alone);
- EventStore: appends of one event each at the expected version; opening the
  store (reading its log of 10,001 events) and rebuilding the aggregate by full
  replay; rebuilding it from a snapshot (one event after it).

    python benchmarks/bench_patterns.py [--reps 3]
"""
import argparse
import os
import statistics
import sys
import time
from typing import Callable, Dict, List

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import shmbus  # noqa: E402
from machine import describe  # noqa: E402


def noop(i):
    return i


def tasks_per_second(bus: shmbus.Bus, n: int = 2000) -> float:
    with shmbus.TaskQueue(bus, f"bench{time.monotonic_ns()}") as tasks, \
            tasks.serve({"noop": noop}, processes=2):
        tasks.result(tasks.submit("noop", -1), timeout=30)  # workers up
        t0 = time.perf_counter()
        ids = [tasks.submit("noop", i) for i in range(n)]
        for task_id in ids:
            tasks.result(task_id, timeout=60)
        seconds = time.perf_counter() - t0
    return n / seconds


def batcher_per_second(bus: shmbus.Bus, n: int = 200_000) -> float:
    topic = f"b{time.monotonic_ns()}"
    bus.create_topic(topic, capacity=64 * 2**20)
    with bus.producer(topic) as p:
        p.send_many([b"x" * 64] * n)
    done = [0]
    with bus.consumer(topic, group="g", ack="manual", start="earliest") as c:
        b = shmbus.Batcher(c, lambda batch: done.__setitem__(0, done[0] + len(batch)),
                           max_size=500, max_wait=0.05)
        t0 = time.perf_counter()
        while done[0] < n:
            b.run(seconds=0.2)
        seconds = time.perf_counter() - t0
    bus.delete_topic(topic)
    return n / seconds


def windows_per_second(n: int = 500_000) -> float:
    w = shmbus.Windows(10.0, delay=2.0)
    keys = [f"user-{i}" for i in range(50)]
    t0 = time.perf_counter()
    for i in range(n):
        w.add(keys[i % 50], i * 0.001, 1)
    return n / (time.perf_counter() - t0)


def event_store(bus: shmbus.Bus, n: int = 10_000) -> Dict[str, float]:
    name = f"es{time.monotonic_ns()}"
    apply = lambda state, e: state + e  # noqa: E731
    with shmbus.EventStore(bus, name, capacity=64 * 2**20) as s:
        t0 = time.perf_counter()
        for v in range(n):
            s.append("acct", [1], expected_version=v)
        appends = n / (time.perf_counter() - t0)
        s.save_snapshot("acct", *s.rebuild("acct", apply, 0))
        s.append("acct", [1], expected_version=n)
    t0 = time.perf_counter()
    with shmbus.EventStore(bus, name) as fresh:  # as a new process: reads the whole log
        fresh.rebuild("acct", apply, 0, use_snapshot=False)
        full = time.perf_counter() - t0
        t0 = time.perf_counter()
        fresh.rebuild("acct", apply, 0)
        snap = time.perf_counter() - t0
    for t in (f"{name}.events", f"{name}.snapshots"):
        bus.delete_topic(t)
    return {"appends/s": appends, "open + full replay ms": full * 1e3,
            "rebuild from snapshot ms": snap * 1e3}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args(argv)
    runs: Dict[str, List[float]] = {}
    bus = shmbus.Bus(f"bench-patterns-{os.getpid()}")
    measures: Dict[str, Callable[[], Dict[str, float]]] = {
        "TaskQueue": lambda: {"tasks/s": tasks_per_second(bus)},
        "Batcher": lambda: {"msgs/s": batcher_per_second(bus)},
        "Windows": lambda: {"events/s": windows_per_second()},
        "EventStore": lambda: event_store(bus),
    }
    try:
        for r in range(args.reps):
            for what, measure in measures.items():
                for unit, v in measure().items():
                    runs.setdefault(f"{what} {unit}", []).append(v)
            print(f"rep {r + 1}/{args.reps} done", flush=True)
    finally:
        bus.unlink()
        bus.close()
    print("\n| pattern | median | spread |")
    print("|---|---|---|")
    for k, v in runs.items():
        med = statistics.median(v)
        shown = f"{med / 1e3:.1f} k" if med >= 1e4 else f"{med:.1f}"
        print(f"| {k} | {shown} | {(max(v) - min(v)) / med * 100:.0f} % |")
    print(", ".join(f"{k}: {v}" for k, v in describe().items()))


if __name__ == "__main__":
    main()
