"""Batch processing with :class:`shmbus.Batcher`: per-user totals, written in bulk.

Two producer processes publish purchases (``user,amount``, keyed by user); a
Batcher hands the consumer batches of up to 500 of them (or what came within
0.2 s), each batch is aggregated per user and written with one bulk upsert (here,
into a dict standing for a database table), then acknowledged together.

    python -m shmbus.examples.user_totals [--purchases 20000]
"""
import argparse
import multiprocessing as mp
import os
import random
from collections import Counter

import shmbus

USERS = [f"user-{i}" for i in range(20)]


def shop(bus_name: str, seed: int, purchases: int) -> None:
    rnd = random.Random(seed)
    with shmbus.Bus(bus_name) as bus, bus.producer("purchases") as p:
        for _ in range(purchases):
            user = rnd.choice(USERS)
            p.send(f"{user},{rnd.randint(1, 100)}".encode(), key=user)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--purchases", type=int, default=20_000, help="per producer")
    args = ap.parse_args(argv)
    bus = shmbus.Bus(f"user-totals-{os.getpid()}")
    table: Counter = Counter()  # the "database"
    upserts = []

    def bulk_upsert(batch) -> None:
        totals: Counter = Counter()
        for m in batch:
            user, amount = m.value.decode().split(",")
            totals[user] += int(amount)
        table.update(totals)  # one bulk write per batch
        upserts.append(len(batch))

    try:
        bus.create_topic("purchases", partitions=2)
        with bus.consumer("purchases", group="totals", ack="manual", start="earliest") as c:
            ctx = mp.get_context("spawn")
            shops = [ctx.Process(target=shop, args=(bus.name, s, args.purchases)) for s in (1, 2)]
            for s in shops:
                s.start()
            batcher = shmbus.Batcher(c, bulk_upsert, max_size=500, max_wait=0.2)
            while sum(upserts) < 2 * args.purchases:
                batcher.run(seconds=0.5)
            for s in shops:
                s.join(30)
        expected: Counter = Counter()
        for seed in (1, 2):  # the same purchases, computed directly
            rnd = random.Random(seed)
            for _ in range(args.purchases):
                user = rnd.choice(USERS)
                expected[user] += rnd.randint(1, 100)
        print(f"{sum(upserts)} purchases in {len(upserts)} bulk upserts "
              f"(largest {max(upserts)}, smallest {min(upserts)})")
        for user, total in sorted(table.items())[:5]:
            print(f"  {user}: {total}")
        print("  ...")
        print("totals match the purchases:", table == expected)
    finally:
        bus.unlink()
        bus.close()


if __name__ == "__main__":
    main()
