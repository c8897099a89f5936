"""Children for test_batch and test_windows: producers of numbered or timed events."""
import json

import shmbus


def send_numbers(bus_name, topic, n):
    with shmbus.Bus(bus_name) as bus, bus.producer(topic) as p:
        for i in range(n):
            p.send(str(i).encode())
    return n


def send_events(bus_name, topic, events):
    with shmbus.Bus(bus_name) as bus, bus.producer(topic) as p:
        for key, t, v in events:
            p.send(json.dumps([key, t, v]).encode(), key=key)
    return len(events)
