"""Child-process helpers for test_spill.py.

Run through ``_workers.run`` as ``"_spill_workers:function"``.  Every wait is
bounded by the worker itself; the parent kills what is left anyway."""
import time

import shmbus
from _workers import parse, payload


def send_n(bus_name, topic, pid, n, size=-1, first=0):
    """Sends payload(pid, first .. first + n - 1); returns how many went to the spill."""
    spilled = 0
    with shmbus.Bus(bus_name) as bus, bus.producer(topic) as p:
        for seq in range(first, first + n):
            spilled += p.send(payload(pid, seq, size)).offset is None
    return spilled


def reader(bus_name, topic, group, ready, want, deadline=60.0):
    """Reads until it has ``want`` messages (or the deadline): [(pid, seq)]."""
    got = []
    with shmbus.Bus(bus_name) as bus, bus.consumer(topic, group=group, start="earliest") as c:
        ready.set()
        end = time.monotonic() + deadline
        while len(got) < want and time.monotonic() < end:
            got += [parse(m.value) for m in c.poll_batch(500, timeout=0.1)]
    return got


def send_values(bus_name, topic, values, ready=None):
    """Sends each value (bytes); returns the offsets (None: spilled)."""
    with shmbus.Bus(bus_name) as bus, bus.producer(topic) as p:
        if ready is not None:
            ready.set()
        return [p.send(v).offset for v in values]
