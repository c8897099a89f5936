"""Child-process helpers for test_disk.py: producers and readers of disk buses.

Run through ``_workers.run`` as ``"_disk_workers:function"``.  Every wait is
bounded by the worker itself; the parent kills what is left anyway."""
import time

import shmbus
from _workers import parse, payload


def sender(bus_name, path, topic, pid, returned, ready, deadline=60.0, size=-1):
    """Sends payload(pid, 0), payload(pid, 1), ... until killed, keeping in
    ``returned`` (a shared int) the count of sends that have returned."""
    with shmbus.Bus(bus_name, path=path) as bus, bus.producer(topic, timeout=10.0) as p:
        ready.set()
        end = time.monotonic() + deadline
        seq = 0
        while time.monotonic() < end:
            p.send(payload(pid, seq, size))
            seq += 1
            returned.value = seq


def member(bus_name, path, topic, group, ready, deadline=60.0):
    """Reads with manual acks until killed."""
    with shmbus.Bus(bus_name, path=path) as bus, \
            bus.consumer(topic, group=group, ack="manual", start="earliest") as c:
        ready.set()
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            msgs = c.poll_batch(50, timeout=0.05)
            if msgs:
                c.ack(msgs)


def read_all(bus_name, path, topic, group=None, start="earliest", timeout=0.5):
    """Everything a fresh process can read: [(pid, seq) or None if torn], the
    group's committed offsets before reading, and the partition figures."""
    with shmbus.Bus(bus_name, path=path) as bus:
        before = None
        if group is not None:
            g = [x for x in bus.stats(topic)["groups"] if x["name"] == group]
            before = [p["committed"] for p in g[0]["partitions"]] if g else None
        got = []
        ack = "auto" if group is None else "manual"
        with bus.consumer(topic, group=group, start=start, ack=ack) as c:
            while True:
                msgs = c.poll_batch(1000, timeout=timeout)
                if not msgs:
                    break
                got += [parse(m.value) for m in msgs]
                if group is not None:
                    c.ack(msgs)
        return got, before, bus.stats(topic)["partitions"]


def send_n(bus_name, path, topic, n, fsync_each=False, size=-1):
    with shmbus.Bus(bus_name, path=path) as bus, bus.producer(topic, timeout=10.0) as p:
        for seq in range(n):
            p.send(payload(0, seq, size))
        p.flush()
    return n


def open_topic(bus_name, path, topic):
    """Opens a consumer of the topic (recovering it if it falls to this process)."""
    with shmbus.Bus(bus_name, path=path) as bus, bus.consumer(topic, start="earliest"):
        return True
