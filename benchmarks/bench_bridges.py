"""Bridge throughput at 1 KiB against local servers, beside each server's own
client doing the same work without shmbus:

- Redis out: a topic filled with N messages, forwarded by ``RedisBridge`` (XADD
  by pipelines of 256); in: a stream of N entries brought into a topic
  (XREADGROUP, one XACK each); beside them ``redis-benchmark`` running XADD of
  1 KiB with a pipeline of 256 (the server's own client benchmark);
- NATS out and in the same with ``NatsBridge``; beside them nats-py alone
  publishing N messages to JetStream in batches of 256 (no ``nats bench`` in
  Debian's package).

The kinds run interleaved (A B C ... A B C ...) ``--reps`` times; medians and
the spread (max - min over the median).  Servers: start them first, e.g.
``redis-server --port 6390 --save ''`` and ``nats-server -js -p 4230 -sd /tmp/js``.

    python benchmarks/bench_bridges.py --redis redis://127.0.0.1:6390 \\
        --nats nats://127.0.0.1:4230 [--reps 3] [--messages 50000]
"""
import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from typing import Callable, Dict, List

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import shmbus  # noqa: E402
from machine import describe  # noqa: E402
from shmbus.bridge import NatsBridge, RedisBridge  # noqa: E402

VALUE = b"x" * 1024


def _drive(bridge, n: int) -> float:
    t0 = time.perf_counter()
    bridge.start()
    while bridge.stats.forwarded < n:
        if not bridge.running:
            raise SystemExit(f"the bridge stopped: {bridge.stats.last_error}")
        time.sleep(0.005)
    seconds = time.perf_counter() - t0
    bridge.close()
    return n / seconds


def out_rate(bus: shmbus.Bus, make: Callable, n: int) -> float:
    topic = f"t{uuid.uuid4().hex[:8]}"
    bus.create_topic(topic, capacity=128 * 2**20)
    with bus.producer(topic) as p:
        p.send_many([VALUE] * n)
    rate = _drive(make(bus, topic, "out"), n)
    bus.delete_topic(topic)
    return rate


def in_rate(bus: shmbus.Bus, make: Callable, fill: Callable[[int], None], n: int) -> float:
    topic = f"t{uuid.uuid4().hex[:8]}"
    bus.create_topic(topic, capacity=128 * 2**20)
    fill(n)
    rate = _drive(make(bus, topic, "in"), n)
    bus.delete_topic(topic)
    return rate


def redis_benchmark(url: str, n: int) -> float:
    import redis
    port = redis.Redis.from_url(url).connection_pool.connection_kwargs["port"]
    exe = shutil.which("redis-benchmark")
    out = subprocess.run([exe, "-p", str(port), "-n", str(n), "-P", "256", "-q", "XADD",
                          f"bench-{uuid.uuid4().hex[:6]}", "*", "v", VALUE.decode()],
                         capture_output=True, text=True, timeout=300).stdout
    # "XADD ...: 123456.79 requests per second, p50=..." (the last \r-separated part)
    return float(out.split("\r")[-1].split(":")[-1].split("requests")[0].strip().split()[-1])


def nats_alone(url: str, n: int) -> float:
    import nats

    async def publish() -> float:
        nc = await nats.connect(url)
        js = nc.jetstream()
        subject = f"bench.{uuid.uuid4().hex[:8]}"
        await js.add_stream(name=subject.replace(".", "_"), subjects=[subject])
        t0 = time.perf_counter()
        for start in range(0, n, 256):
            await asyncio.gather(*(js.publish(subject, VALUE) for _ in range(min(256, n - start))))
        seconds = time.perf_counter() - t0
        await js.delete_stream(subject.replace(".", "_"))
        await nc.close()
        return n / seconds
    return asyncio.run(publish())


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--redis", required=True)
    ap.add_argument("--nats", required=True)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--messages", type=int, default=50_000)
    args = ap.parse_args(argv)
    import redis
    n = args.messages
    stream = lambda: f"s{uuid.uuid4().hex[:8]}"  # noqa: E731
    client = redis.Redis.from_url(args.redis)

    def redis_fill(name):
        def fill(count):
            pipe = client.pipeline(transaction=False)
            for _ in range(count):
                pipe.xadd(name, {"v": VALUE})
            pipe.execute()
        return fill

    def nats_fill(subject):
        def fill(count):
            import nats

            async def go():
                nc = await nats.connect(args.nats)
                js = nc.jetstream()
                await js.add_stream(name=f"SHMBUS_{subject.replace('.', '_')}", subjects=[subject])
                for start in range(0, count, 256):
                    await asyncio.gather(*(js.publish(subject, VALUE)
                                           for _ in range(min(256, count - start))))
                await nc.close()
            asyncio.run(go())
        return fill

    def redis_in(bus):
        name = stream()
        return in_rate(bus, lambda b, t, d: RedisBridge(b, t, f"{args.redis}/{name}", d),
                       redis_fill(name), n)

    def nats_in(bus):
        subject = f"in.{uuid.uuid4().hex[:8]}"
        return in_rate(bus, lambda b, t, d: NatsBridge(b, t, f"{args.nats}/{subject}", d),
                       nats_fill(subject), n)

    kinds: Dict[str, Callable[[shmbus.Bus], float]] = {
        "Redis: bridge out": lambda bus: out_rate(
            bus, lambda b, t, d: RedisBridge(b, t, f"{args.redis}/{stream()}", d), n),
        "Redis: bridge in": redis_in,
        "Redis: redis-benchmark XADD, pipeline 256": lambda bus: redis_benchmark(args.redis, n),
        "NATS: bridge out": lambda bus: out_rate(
            bus, lambda b, t, d: NatsBridge(b, t, f"{args.nats}/out.{uuid.uuid4().hex[:8]}", d), n),
        "NATS: bridge in": nats_in,
        "NATS: nats-py alone, JetStream publish by 256": lambda bus: nats_alone(args.nats, n),
    }
    rates: Dict[str, List[float]] = {k: [] for k in kinds}
    bus = shmbus.Bus(f"bench-bridges-{os.getpid()}")
    try:
        for r in range(args.reps):
            for k, measure in kinds.items():
                rates[k].append(measure(bus))
            print(f"rep {r + 1}/{args.reps}: " + ", ".join(
                f"{k} {v[-1] / 1e3:.1f} k/s" for k, v in rates.items()), flush=True)
    finally:
        bus.unlink()
        bus.close()
    print(f"\n| 1 KiB, {n} messages | msgs/s (median) | MB/s | spread |")
    print("|---|---|---|---|")
    for k, v in rates.items():
        med = statistics.median(v)
        print(f"| {k} | {med / 1e3:.1f} k | {med * 1024 / 1e6:.0f} | "
              f"{(max(v) - min(v)) / med * 100:.0f} % |")
    print(", ".join(f"{k}: {v}" for k, v in describe().items()))


if __name__ == "__main__":
    main()
