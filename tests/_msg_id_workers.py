"""Children for test_msg_id: producers that send with msg_ids (some die on the way)."""
import time

import shmbus


def send_ids(bus_name, topic, ids, go=None, deadline=30.0):
    """Sends one message per id (its value names the sender); returns the offsets."""
    if go is not None:
        end = time.monotonic() + deadline
        while not go.is_set() and time.monotonic() < end:
            time.sleep(0.001)
    out = []
    with shmbus.Bus(bus_name) as bus, bus.producer(topic) as p:
        for i in ids:
            out.append(tuple(p.send(f"{i}".encode(), msg_id=f"id-{i}")))
    return out


def send_and_die(bus_name, topic, msg_id):
    """Run with SHMBUS_FAULT set: dies inside the send."""
    with shmbus.Bus(bus_name) as bus, bus.producer(topic) as p:
        p.send(b"dies", msg_id=msg_id)
    return "not reached"
