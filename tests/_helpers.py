"""Helpers shared by the unit tests (not a test module)."""
import os
import time

SHM = "/dev/shm"


def segments_of(bus_name, topic=None):
    """Names in /dev/shm that belong to a bus (or to one of its topics)."""
    if topic is None:
        exact, prefix = f"shmbus:{bus_name}", f"shmbus:{bus_name}:"
    else:
        exact, prefix = None, f"shmbus:{bus_name}:{topic}:"
    return sorted(n for n in os.listdir(SHM) if n == exact or n.startswith(prefix))


def mode_bits(segment):
    return os.stat(os.path.join(SHM, segment)).st_mode & 0o777


def drain(consumer, n, timeout=5.0, field=lambda m: m.value):
    """Poll until ``n`` messages arrived or ``timeout`` passed; ``field`` of each
    (their values by default)."""
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        m = consumer.poll(timeout=0.1)
        if m is not None:
            out.append(field(m))
    return out


class Witness:
    """A topic with a consumer that existed before some bad call, and what was
    published to it.  ``check()`` proves nothing already published was lost: the
    consumer receives every message, in order, and the topic still works."""

    def __init__(self, bus, topic="witness", count=3, **config):
        self.bus = bus
        self.topic = topic
        bus.create_topic(topic, **config)
        self.consumer = bus.consumer(topic, start="earliest")
        self.producer = bus.producer(topic)
        # with several partitions order holds per partition only: stay on partition 0
        self.partition = 0 if config.get("partitions", 1) > 1 else None
        self.sent = []
        self.publish(count)

    def publish(self, count=1):
        for _ in range(count):
            value = f"{self.topic}-{len(self.sent)}".encode()
            assert self.producer.send(value, partition=self.partition) is not None
            self.sent.append(value)

    def check(self):
        self.publish(1)  # the topic still accepts messages after the bad call
        got = drain(self.consumer, len(self.sent))
        assert got == self.sent
        assert self.consumer.poll(timeout=0) is None
        self.consumer.close()
        self.producer.close()
