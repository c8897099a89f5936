"""Children for test_bridge_redis: a bridge run in a process of its own (to be
killed), and a producer of keyed, numbered messages."""
import shmbus
from shmbus.bridge import RedisBridge


def run_bridge(bus_name, topic, url, direction, seconds):
    with shmbus.Bus(bus_name) as bus:
        b = RedisBridge(bus, topic, url, direction)
        try:
            b.run(seconds)
        finally:
            b.close()
    return b.stats.forwarded


def produce(bus_name, topic, n, keys=10):
    with shmbus.Bus(bus_name) as bus, bus.producer(topic) as p:
        for i in range(n):
            k = f"key-{i % keys}"
            p.send(f"{k}:{i // keys}".encode(), key=k, headers={"n": str(i), "raw": b"\x00\x01"})
    return n


def run_nats_bridge(bus_name, topic, url, direction, seconds, ack_wait=30.0):
    from shmbus.bridge import NatsBridge
    with shmbus.Bus(bus_name) as bus:
        b = NatsBridge(bus, topic, url, direction, ack_wait=ack_wait)
        try:
            b.run(seconds)
        finally:
            b.close()
    return b.stats.forwarded
