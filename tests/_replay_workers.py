"""Child-process helpers for test_replay.py: group members on log topics.

Run through ``_workers.run`` as ``"_replay_workers:function"``."""
import time

import shmbus


def read_group(bus_name, topic, group, start="earliest", ack="auto", quiet=0.5, deadline=30.0):
    """Reads a named group until ``quiet`` seconds pass without a message:
    the values (as ints) and the sum of lost_before."""
    got, lost = [], 0
    with shmbus.Bus(bus_name) as bus, bus.consumer(topic, group=group, start=start, ack=ack) as c:
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            msgs = c.poll_batch(500, timeout=quiet)
            if not msgs:
                break
            for m in msgs:
                lost += m.lost_before
                got.append(int(m.value))
            if ack == "manual":
                c.ack(msgs)
    return got, lost
