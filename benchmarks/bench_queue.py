"""shmbus.Queue beside multiprocessing.Queue and faster-fifo: small Python objects
put by one process and got by another, one at a time and in batches of 100,
interleaved (A B C A B C ...) so that ratios hold on a noisy machine; medians of
``--reps`` runs with the spread (max - min over the median).

    python benchmarks/bench_queue.py [--reps 5] [--count 200000]
"""
import argparse
import multiprocessing as mp
import queue
import statistics
import time

ITEM = (12345, "order-created", 99.5, {"user": 42})


def make(kind: str, ctx):
    if kind == "shmbus.Queue":
        import shmbus
        return shmbus.Queue(maxsize=1000)
    if kind == "faster-fifo":
        import faster_fifo
        return faster_fifo.Queue(max_size_bytes=64 * 2**20)
    return ctx.Queue(maxsize=1000)


def putter(q, count: int, batch: int, go) -> None:
    go.wait(30)
    if batch == 1:
        for i in range(count):
            q.put((i,) + ITEM[1:], timeout=30)
    else:
        for start in range(0, count, batch):
            q.put_many([(i,) + ITEM[1:] for i in range(start, min(count, start + batch))], timeout=30)


def getter(q, count: int, batch: int, go, out) -> None:
    go.wait(30)
    got, last = 0, -1
    t0 = time.perf_counter()
    while got < count:
        try:
            items = [q.get(timeout=10)] if batch == 1 else q.get_many(timeout=10, max_messages_to_get=batch)
        except queue.Empty:
            break
        for x in items:
            assert x[0] == last + 1, (x[0], last)
            last = x[0]
        got += len(items)
    out.put((got, time.perf_counter() - t0))


def run(kind: str, count: int, batch: int) -> float:
    ctx = mp.get_context("spawn")
    q = make(kind, ctx)
    go, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=getter, args=(q, count, batch, go, out)),
             ctx.Process(target=putter, args=(q, count, batch, go))]
    for p in procs:
        p.start()
    time.sleep(0.5)
    go.set()
    got, seconds = out.get(timeout=120)
    for p in procs:
        p.join(30)
    if hasattr(q, "close"):
        q.close()
    if got != count:
        raise RuntimeError(f"{kind}: got {got} of {count}")
    return count / seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--count", type=int, default=200_000)
    args = ap.parse_args()
    kinds = ["shmbus.Queue", "multiprocessing.Queue"]
    try:
        import faster_fifo  # noqa: F401
        kinds.append("faster-fifo")
    except ImportError:
        print("faster-fifo not installed: skipped (pip install '.[bench]')")
    for batch in (1, 100):
        rates = {k: [] for k in kinds if not (batch > 1 and k == "multiprocessing.Queue")}
        for _ in range(args.reps):
            for k in rates:
                rates[k].append(run(k, args.count if batch > 1 or k != "multiprocessing.Queue"
                                    else args.count // 4, batch))
        base = statistics.median(rates["shmbus.Queue"])
        how = "put/get one at a time" if batch == 1 else f"put_many/get_many by {batch}"
        print(f"\n{how}, {args.reps} runs, items/s (median, spread, shmbus.Queue ÷ it)")
        for k, r in rates.items():
            med = statistics.median(r)
            print(f"  {k:22s} {med / 1e3:9.1f} k  {(max(r) - min(r)) / med * 100:4.0f} %  {base / med:5.1f}x")


if __name__ == "__main__":
    main()
