"""Children for the command-line tests (started through _workers.run)."""
import os
import signal
import time

import shmbus


def publish(bus_name, topic, count):
    """Send ``count`` messages keyed over 7 keys; the number of each is its value."""
    with shmbus.Bus(bus_name) as bus, bus.producer(topic, timeout=20.0) as p:
        for i in range(count):
            p.send(str(i).encode(), key=str(i % 7))
    return count


def hold(bus_name, topic, group, take, ack, ready, deadline=30.0):
    """Join ``group`` (manual acks), take ``take`` messages, ack the first ``ack``
    of them, set ``ready``, and stay (holding the rest) until killed."""
    bus = shmbus.Bus(bus_name)
    c = bus.consumer(topic, group=group, ack="manual", ordering="none", start="earliest")
    got = []
    end = time.monotonic() + deadline
    while len(got) < take and time.monotonic() < end:
        got.extend(c.poll_batch(take - len(got), timeout=0.1))
    c.ack(got[:ack])
    ready.set()
    time.sleep(deadline)


def dead_bus(bus_name, topic):
    """Make a bus with a producer and a consumer, send, and die by SIGKILL."""
    bus = shmbus.Bus(bus_name)
    bus.create_topic(topic, capacity=2**16)
    p = bus.producer(topic)
    c = bus.consumer(topic, group="g", start="earliest")
    p.send(b"x")
    c.poll(timeout=1.0)
    os.kill(os.getpid(), signal.SIGKILL)
