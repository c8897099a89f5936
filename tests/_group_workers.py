"""Child-process helpers for test_groups.py: members of consumer groups.

Run through ``_workers.run`` as ``"_group_workers:function"``.  Every wait is
bounded by the worker itself; the parent kills what is left anyway."""
import pickle
import time
from array import array

import shmbus


def member(bus_name, topic, group, ready, stop, ordering="none", ack="auto", start="earliest",
           batch=100, ack_each=False, deadline=60.0):
    """Consumes until ``stop`` is set; returns the values it got (as ints), their
    delivery counts, and how many it could not read because a producer had
    overwritten them (drop_oldest) between poll and read."""
    got, counts = array("Q"), array("I")
    released = 0
    with shmbus.Bus(bus_name) as bus, bus.consumer(topic, group=group, ordering=ordering, ack=ack,
                                                   start=start) as c:
        ready.set()
        end = time.monotonic() + deadline
        while not stop.is_set() and time.monotonic() < end:
            msgs = c.poll_batch(batch, timeout=0.05)
            for m in msgs:
                try:
                    got.append(int(m.value))
                except shmbus.MessageReleasedError:
                    released += 1
                    continue
                counts.append(m.delivery_count)
                if ack_each:
                    c.ack(m)
            if ack == "manual" and not ack_each and msgs:
                c.ack(msgs)
    return got.tobytes(), counts.tobytes(), released


def holder(bus_name, topic, group, want, ack_first, report, ack_timeout, deadline=30.0):
    """Takes ``want`` messages, acks the first ``ack_first`` of them, reports the
    offsets of all and of the acked ones, then holds the rest until killed."""
    with shmbus.Bus(bus_name) as bus, bus.consumer(topic, group=group, ordering="none",
                                                   ack="manual", start="earliest",
                                                   ack_timeout=ack_timeout) as c:
        msgs = []
        end = time.monotonic() + deadline
        while len(msgs) < want and time.monotonic() < end:
            msgs += c.poll_batch(want - len(msgs), timeout=0.1)
        c.ack(msgs[:ack_first])
        report.put(([m.offset for m in msgs], [m.offset for m in msgs[:ack_first]]))
        time.sleep(deadline)  # killed before this ends


def taker(bus_name, topic, group, ready, results, ack_timeout, quiet=1.5, deadline=30.0):
    """Puts (offset, delivery_count, monotonic time) of every message it gets on
    ``results`` as it gets them, acks them, and stops after ``quiet`` seconds
    without a message once it has had one."""
    with shmbus.Bus(bus_name) as bus, bus.consumer(topic, group=group, ordering="none",
                                                   ack="manual", ack_timeout=ack_timeout) as c:
        ready.set()
        end = time.monotonic() + deadline
        last = None
        while time.monotonic() < end:
            msgs = c.poll_batch(100, timeout=0.05)
            if msgs:
                results.put([(m.offset, m.delivery_count, time.monotonic()) for m in msgs])
                c.ack(msgs)
                last = time.monotonic()
            elif last is not None and time.monotonic() - last > quiet:
                break
    results.put(None)


def poison_member(bus_name, topic, group, ready, stop, poison, dead_letter, max_deliveries,
                  deadline=60.0):
    """Acks every message but ``poison``, which it nacks (with an error) each time."""
    acked = array("Q")
    with shmbus.Bus(bus_name) as bus, bus.consumer(topic, group=group, ordering="none",
                                                   ack="manual", start="earliest",
                                                   max_deliveries=max_deliveries,
                                                   dead_letter=dead_letter) as c:
        ready.set()
        end = time.monotonic() + deadline
        while not stop.is_set() and time.monotonic() < end:
            for m in c.poll_batch(50, timeout=0.05):
                if m.value == poison:
                    c.nack(m, error="cannot parse")
                else:
                    acked.append(int(m.value))
                    c.ack(m)
    return acked.tobytes()


def recording_member(bus_name, topic, group, ready, records, stop, ordering="partition",
                     deadline=60.0):
    """Manual acks: publishes [(value, delivery_count, time_ns)] of each batch to
    the topic ``records`` before acking it.  A send is in shared memory when it
    returns (a multiprocessing.Queue would still hold it in a feeder thread), so a
    kill loses nothing the member processed."""
    with shmbus.Bus(bus_name) as bus, bus.producer(records) as out, \
            bus.consumer(topic, group=group, ordering=ordering, ack="manual", start="earliest",
                         ack_timeout=30.0) as c:
        ready.set()
        end = time.monotonic() + deadline
        while not stop.is_set() and time.monotonic() < end:
            msgs = c.poll_batch(20, timeout=0.05)
            if msgs:
                out.send(pickle.dumps([(m.value, m.delivery_count, time.monotonic_ns())
                                       for m in msgs]))
                c.ack(msgs)
    return None


def keyed_producer(bus_name, topic, keys, per_key, go, pause=0.0005, deadline=60.0):
    """Sends "key:seq" for seq in range(per_key), round-robin over the keys."""
    with shmbus.Bus(bus_name) as bus, bus.producer(topic, timeout=deadline) as p:
        go.wait(deadline)
        for seq in range(per_key):
            for k in keys:
                p.send(f"{k}:{seq}".encode(), key=k)
            time.sleep(pause)
    return per_key * len(keys)


def resume(bus_name, topic, group, take, ack, results=None, hold=0, start="committed",
           deadline=30.0):
    """Joins (start="committed" by default), takes ``take`` messages (values as ints),
    acks all but the last ``hold`` and then closes; or, with ``hold``, reports and
    waits to be killed."""
    with shmbus.Bus(bus_name) as bus, bus.consumer(topic, group=group, ordering="none",
                                                   ack=ack, start=start) as c:
        got, counts = [], []
        end = time.monotonic() + deadline
        while len(got) < take and time.monotonic() < end:
            for m in c.poll_batch(take - len(got), timeout=0.1):
                got.append(int(m.value))
                counts.append(m.delivery_count)
                if ack == "manual" and len(got) <= take - hold:
                    c.ack(m)
        if hold:
            results.put((got, counts))
            time.sleep(deadline)
    return got, counts


def faulty_member(bus_name, topic, group, ordering="none", ack="manual", deadline=20.0):
    """Run with SHMBUS_FAULT set: dies at the fault point, opening or polling."""
    with shmbus.Bus(bus_name) as bus, bus.consumer(topic, group=group, ordering=ordering, ack=ack,
                                                   start="earliest") as c:
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            c.poll_batch(10, timeout=0.1)
    return "survived the fault point"
