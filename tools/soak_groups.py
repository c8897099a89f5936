"""Soak a consumer group: members that ack by hand are SIGKILLed at random while a
producer publishes keyed messages; replacements join.  After each round the
group must have drained with every message processed at least once and completed
(its acked counter short only by batches whose member was killed between
completing and counting them), and, under ordering="partition", each key
processed in order but for replays of what a killed member held.

    python tools/soak_groups.py [--seconds 300] [--ordering none|partition|both]
                                [--retention consumed|log]

Members publish what they processed to a topic before acking it, so a kill loses
no record of it.  Exit status 0 when every round held, 1 otherwise.
"""
import argparse
import multiprocessing as mp
import os
import pickle
import random
import signal
import sys
import time
import uuid
from collections import defaultdict

import shmbus

KEYS = [f"k{i}" for i in range(12)]


def member(bus_name, ordering, stop):
    with shmbus.Bus(bus_name) as bus, bus.producer("records") as out, \
            bus.consumer("work", group="g", ordering=ordering, ack="manual", start="earliest",
                         ack_timeout=30.0) as c:
        while not stop.value:
            msgs = c.poll_batch(random.choice((1, 7, 50)), timeout=0.05)
            if msgs:
                out.send(pickle.dumps([(m.value, time.monotonic_ns()) for m in msgs]))
                if random.random() < 0.02:
                    c.nack(msgs[-1])
                    msgs = msgs[:-1]
                c.ack(msgs)


def producer(bus_name, per_key):
    with shmbus.Bus(bus_name) as bus, bus.producer("work", timeout=60) as p:
        for seq in range(per_key):
            for k in KEYS:
                p.send(f"{k}:{seq}".encode(), key=k)
            if seq % 50 == 0:
                time.sleep(0.001)


def check(records, per_key, ordering):
    """Problems found, as text."""
    problems = []
    by_key = defaultdict(list)
    for value, t in records:
        key, seq = value.decode().split(":")
        by_key[key].append((t, int(seq)))
    for key in KEYS:
        seen = {s for _, s in by_key[key]}
        if seen != set(range(per_key)):
            problems.append(f"{key}: {per_key - len(seen)} messages never processed")
        if ordering == "partition":
            nxt = 0
            for _, seq in sorted(by_key[key]):
                if seq > nxt:
                    problems.append(f"{key}: {seq} processed before {nxt}")
                    break
                nxt += seq == nxt
    return problems


def one_round(ordering, per_key, kills, rng, retention="consumed"):
    name = f"soak-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    ctx = mp.get_context("spawn")
    bus = shmbus.Bus(name)
    procs = []
    try:
        bus.create_topic("work", partitions=4, capacity=2**18, retention=retention)
        bus.create_topic("records", capacity=2**23)
        got, early = [], []
        with bus.consumer("records", start="earliest") as rec:
            # not an Event: is_set() takes a lock, and a member killed holding
            # it would block every process that touches the Event (it did)
            stop = ctx.RawValue("b", 0)

            def start_member():
                p = ctx.Process(target=member, args=(name, ordering, stop), daemon=True)
                p.start()
                procs.append(p)
                return p

            live = [start_member() for _ in range(3)]
            prod = ctx.Process(target=producer, args=(name, per_key), daemon=True)
            prod.start()
            procs.append(prod)
            for _ in range(kills):
                end = time.monotonic() + rng.uniform(0.1, 0.6)
                while time.monotonic() < end:
                    for m in rec.poll_batch(1000, timeout=0.02):
                        got.extend(pickle.loads(m.value))
                victim = live.pop(rng.randrange(len(live)))
                if victim.is_alive():
                    os.kill(victim.pid, signal.SIGKILL)
                else:
                    early.append(victim.exitcode)
                live.append(start_member())
            prod.join(120)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                g = next(g for g in bus.stats("work")["groups"] if g["name"] == "g")
                if g["lag"] == 0 and g["pending"] == 0:
                    break
                for m in rec.poll_batch(1000, timeout=0.05):
                    got.extend(pickle.loads(m.value))
            g = next(g for g in bus.stats("work")["groups"] if g["name"] == "g")
            stop.value = 1
            for p in procs:
                p.join(10)
            for m in rec.poll_batch(65536, timeout=0.2):
                got.extend(pickle.loads(m.value))
        problems = check(got, per_key, ordering)
        problems += [f"a member exited on its own, with {code}" for code in early]
        total = per_key * len(KEYS)
        if g["lag"] or g["pending"]:
            problems.append(f"the group did not drain: lag {g['lag']}, pending {g['pending']}")
        # The group drained, so every entry was completed (the committed offset
        # passes only completed ones, and an entry completes once: a CAS).  The
        # acked counter is added per batch after the entries: a member killed in
        # between leaves it short by at most that batch (50).
        if not total - 50 * kills <= g["acked"] <= total:
            problems.append(f"acked {g['acked']} of {total}: more than {kills} batches uncounted")
        return problems, g
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
            p.join(5)
        bus.unlink()
        bus.close()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=300.0)
    ap.add_argument("--ordering", choices=("none", "partition", "both"), default="both")
    ap.add_argument("--per-key", type=int, default=2000)
    ap.add_argument("--kills", type=int, default=6)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--retention", choices=("consumed", "log"), default="consumed")
    args = ap.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(2**32)
    rng = random.Random(seed)
    orderings = ("none", "partition") if args.ordering == "both" else (args.ordering,)
    end = time.monotonic() + args.seconds
    rounds = failed = 0
    print(f"seed {seed}")
    while time.monotonic() < end:
        ordering = orderings[rounds % len(orderings)]
        problems, g = one_round(ordering, args.per_key, args.kills, rng, args.retention)
        rounds += 1
        status = "ok" if not problems else "FAILED"
        print(f"round {rounds} ordering={ordering}: {status}; delivered {g['delivered']}, "
              f"redelivered {g['redelivered']}, acked {g['acked']}", flush=True)
        for p in problems[:10]:
            print("   ", p)
        failed += bool(problems)
    print(f"{rounds} rounds, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
