"""Children for test_recovery: each arms its fault (SHMBUS_FAULT, set by the test
in the child's environment) and does one operation that passes its point."""
import os
import random
import signal
import struct
import time

import shmbus
from _workers import parse, payload


def send_one(bus_name, topic, value, partition=None):
    with shmbus.Bus(bus_name) as bus, bus.producer(topic) as p:
        off = p.send(value, partition=partition)
    return tuple(off)


def create(bus_name, topic):
    with shmbus.Bus(bus_name) as bus:
        bus.create_topic(topic, capacity=4096, partitions=2)
    return "created"


def take_and_ack(bus_name, topic, group, n, ordering="none", deadline=20.0):
    """Takes n messages, then acks them with one call."""
    with shmbus.Bus(bus_name) as bus, bus.consumer(topic, group=group, ack="manual",
                                                   ordering=ordering, start="earliest") as c:
        got = []
        end = time.monotonic() + deadline
        while len(got) < n and time.monotonic() < end:
            got += c.poll_batch(n - len(got), timeout=0.1)
        c.ack(got)
        return [m.value for m in got]


def join_and_poll(bus_name, topic, group, seconds=1.0, ordering="partition"):
    """Joins (rebalancing), polls for a while without taking anything it keeps."""
    with shmbus.Bus(bus_name) as bus, bus.consumer(topic, group=group, ack="manual",
                                                   ordering=ordering, start="earliest") as c:
        end = time.monotonic() + seconds
        got = []
        while time.monotonic() < end:
            for m in c.poll_batch(10, timeout=0.05):
                c.nack(m)  # give it straight back: the test counts on the others
                got.append(m.value)
        return len(got)


def sweep(bus_name, liveness=30.0):
    with shmbus.Bus(bus_name, liveness_timeout=liveness) as bus:
        return bus.sweep()


def holder(bus_name, topic, group, take, ready, ordering="none", ack="manual"):
    """Takes `take` messages, acks none, sets `ready`, then waits to be killed."""
    with shmbus.Bus(bus_name) as bus, bus.consumer(topic, group=group, ack=ack, ordering=ordering,
                                                   start="earliest", ack_timeout=600) as c:
        got = []
        end = time.monotonic() + 20
        while len(got) < take and time.monotonic() < end:
            got += c.poll_batch(take - len(got), timeout=0.1)
        ready.set()
        time.sleep(60)


def forked_claim(bus_name, topic, child_pid):
    """Opens a producer armed to die after its claim, forks a child that only
    sleeps, then sends: this process dies, its child lives on."""
    bus = shmbus.Bus(bus_name)
    p = bus.producer(topic)
    pid = os.fork()
    if pid == 0:
        time.sleep(60)
        os._exit(0)
    child_pid.value = pid
    p.send(b"dies")  # SHMBUS_FAULT=after_claim:kill
    return "survived"


def use_after_fork(bus_name, topic):
    """A producer and a consumer opened here, used in a forked child: what the
    child saw, as text, and what a new producer in the child sent."""
    bus = shmbus.Bus(bus_name)
    p = bus.producer(topic)
    c = bus.consumer(topic, group="forked", start="earliest")
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        out = []
        for what, call in (("send", lambda: p.send(b"x")), ("poll", lambda: c.poll(timeout=0))):
            try:
                call()
                out.append(f"{what}: worked")
            except shmbus.ClosedError as e:
                out.append(f"{what}: {e}")
        with bus.producer(topic) as mine:
            mine.send(b"from the child")
        os.write(w, "\n".join(out).encode())
        os._exit(0)
    os.close(w)
    _, status = os.waitpid(pid, 0)
    seen = os.read(r, 65536).decode().split("\n")
    p.send(b"from the parent")  # the parent's handles still work
    values = [m.value for m in c.poll_batch(10, timeout=2)]
    p.close()
    c.close()
    return dict(status=status, seen=seen, values=values)


_ROUND = struct.Struct("<II")


def kill_rounds(bus_name, topic, rounds, returned, seed):
    """Forks a producer per round and SIGKILLs it at a random moment; each
    records in returned[round] how many of its sends returned."""
    rnd = random.Random(seed)
    for k in range(rounds):
        pid = os.fork()
        if pid == 0:
            try:
                bus = shmbus.Bus(bus_name)
                p = bus.producer(topic, timeout=10)
                seq = 0
                while True:
                    p.send(payload(k, seq, rnd.choice((8, 100, 700))))
                    seq += 1
                    returned[k] = seq
            finally:
                os._exit(1)
        time.sleep(rnd.uniform(0.0005, 0.02))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    return rounds


def check_rounds(values, returned):
    """Problems in what a subscriber got from kill_rounds, as text."""
    seen = {}
    for v in values:
        got = parse(v)
        if got is None:
            return [f"a torn or foreign message: {v[:40]!r}"]
        k, seq = got
        if seq != seen.get(k, 0):
            return [f"round {k}: seq {seq} after {seen.get(k, 0) - 1}"]
        seen[k] = seq + 1
    return [f"round {k}: {seen.get(k, 0)} delivered, {n} returned"
            for k, n in enumerate(returned) if seen.get(k, 0) < n]
