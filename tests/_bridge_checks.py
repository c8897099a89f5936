"""Checks shared by the bridge tests."""
import time


def drain(bus, topic, n, timeout=60):
    """(key, value, headers) of n messages read by a fresh group, in arrival order."""
    out = []
    end = time.monotonic() + timeout
    with bus.consumer(topic, group="check", start="earliest") as c:
        while len(out) < n and time.monotonic() < end:
            out += [(m.key, m.value, m.headers) for m in c.poll_batch(1000, timeout=0.2)]
    return out


def in_key_order(got):
    """Whether each key's sequence numbers come in order."""
    last = {}
    for key, value, _ in got:
        seq = int(value.split(b":")[1])
        if seq <= last.get(key, -1):
            return False
        last[key] = seq
    return True
