"""Two buses standing for two hosts exchange a topic through Redis Streams, and
the same through NATS JetStream.

On "host A" a producer publishes orders to the topic ``orders``; a bridge
forwards it out to the remote log; on "host B" a bridge brings it in to its own
``orders`` topic, where a consumer reads every order with its key and headers.

    python -m shmbus.examples.two_hosts [--redis redis://127.0.0.1:6379]
                                        [--nats nats://127.0.0.1:4222] [--orders 1000]

A transport whose server does not answer is skipped, saying so.
"""
import argparse
import os
import time
import uuid

import shmbus
from shmbus.bridge import NatsBridge, RedisBridge


def exchange(kind: str, make, orders: int) -> None:
    host_a = shmbus.Bus(f"host-a-{os.getpid()}")
    host_b = shmbus.Bus(f"host-b-{os.getpid()}")
    try:
        for bus in (host_a, host_b):
            bus.create_topic("orders")
        with make(host_a, "out") as out, make(host_b, "in") as in_, \
                host_b.consumer("orders", group="shipping", start="earliest") as c:
            t0 = time.monotonic()
            with host_a.producer("orders") as p:
                for i in range(orders):
                    user = f"user-{i % 7}"
                    p.send(f"order {i}".encode(), key=user, headers={"currency": "EUR"})
            got = []
            while len(got) < orders and time.monotonic() - t0 < 30:
                got += [(m.key, m.value, m.headers) for m in c.poll_batch(1000, timeout=0.2)]
            seconds = time.monotonic() - t0
        print(f"{kind}: {len(got)} of {orders} orders from host A reached host B in "
              f"{seconds:.2f} s; the first: key {got[0][0]!r}, {got[0][1]!r}, headers {got[0][2]}; "
              f"out forwarded {out.stats.forwarded}, in {in_.stats.forwarded}")
    finally:
        for bus in (host_a, host_b):
            bus.unlink()
            bus.close()


def reachable(url: str) -> bool:
    """Whether a Redis or NATS server answers at ``url``."""
    try:
        if url.startswith("redis"):
            import redis
            return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
        import asyncio
        import nats

        async def probe() -> bool:
            nc = await nats.connect(url, connect_timeout=1, allow_reconnect=False)
            await nc.close()
            return True
        return asyncio.run(probe())
    except Exception:  # noqa: BLE001 - any failure means: not there
        return False


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--redis", default="redis://127.0.0.1:6379")
    ap.add_argument("--nats", default="nats://127.0.0.1:4222")
    ap.add_argument("--orders", type=int, default=1000)
    args = ap.parse_args(argv)
    name = f"orders-{uuid.uuid4().hex[:8]}"
    transports = {
        "Redis Streams": lambda bus, d: RedisBridge(bus, "orders", f"{args.redis}/{name}", d),
        "NATS JetStream": lambda bus, d: NatsBridge(bus, "orders", f"{args.nats}/{name}", d),
    }
    for (kind, make), url in zip(transports.items(), (args.redis, args.nats)):
        if reachable(url):
            exchange(kind, make, args.orders)
        else:
            print(f"{kind}: no server answers at {url}; skipped")


if __name__ == "__main__":
    main()
