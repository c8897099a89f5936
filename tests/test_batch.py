"""Batcher: batches of at most max_size, handed over by max_wait, acknowledged
together after the handler returns; a failing batch retried or dead-lettered
whole."""
import time

import pytest

import shmbus

pytestmark = pytest.mark.timeout(60)
W = "_stream_workers:"


@pytest.fixture
def topic(bus):
    bus.create_topic("events", capacity=1 << 20)
    return "events"


def test_batches_are_bounded_and_acked_together(bus, topic, procs):
    procs.start("p", W + "send_numbers", bus_name=bus.name, topic=topic, n=1000)
    sizes, seen = [], []

    def handler(batch):
        sizes.append(len(batch))
        seen.extend(int(m.value) for m in batch)

    with bus.consumer(topic, group="g", ack="manual", start="earliest") as c:
        b = shmbus.Batcher(c, handler, max_size=100, max_wait=0.2)
        end = time.monotonic() + 30
        while len(seen) < 1000 and time.monotonic() < end:
            b.run(seconds=0.5)
        assert procs.result("p") == 1000
        assert sorted(seen) == list(range(1000)) and max(sizes) <= 100
        assert b.batches == len(sizes) and b.messages == 1000
    g = next(g for g in bus.stats(topic)["groups"] if g["name"] == "g")
    assert (g["acked"], g["lag"], g["pending"]) == (1000, 0, 0)


def test_a_small_batch_is_handed_over_after_max_wait(bus, topic):
    got = []
    with bus.consumer(topic, group="g", ack="manual") as c, bus.producer(topic) as p:
        b = shmbus.Batcher(c, lambda batch: got.append((time.monotonic(), len(batch))),
                           max_size=100, max_wait=0.4).start()
        try:
            time.sleep(0.2)
            t0 = time.monotonic()
            for i in range(5):
                p.send(b"x")
            deadline = time.monotonic() + 10
            while not got and time.monotonic() < deadline:
                time.sleep(0.01)
        finally:
            assert b.stop(5)
    assert got[0][1] == 5 and 0.35 <= got[0][0] - t0 <= 0.4 + 1.0


def test_a_failing_batch_is_retried_whole_then_dead_lettered(bus, topic):
    calls = []

    def flaky(batch):
        calls.append([m.value for m in batch])
        if len(calls) == 1:
            raise ConnectionError("the database went away")

    retrying = shmbus.Retrying(transient=shmbus.FixedInterval(0.1, max_retries=3))
    with bus.producer(topic) as p:
        p.send_many([b"a", b"b", b"c"])
    with bus.consumer(topic, group="g", ack="manual", ordering="none", start="earliest") as c:
        b = shmbus.Batcher(c, flaky, max_size=10, max_wait=0.1, retrying=retrying)
        end = time.monotonic() + 10
        while len(calls) < 2 and time.monotonic() < end:
            b.run(seconds=0.3)
        assert sorted(calls[0]) == sorted(calls[1]) == [b"a", b"b", b"c"]
        assert (b.retried, b.messages) == (3, 3)
    with bus.producer(topic) as p:
        p.send_many([b"bad1", b"bad2"])

    def broken(batch):
        raise ValueError("cannot parse")

    with bus.consumer(topic, group="g2", ack="manual", start="earliest",
                      dead_letter="events.dead") as c:
        b = shmbus.Batcher(c, broken, max_size=10, max_wait=0.1)
        b.run(seconds=1.0)
        assert b.dead == 2  # a, b and c were freed once g acked them
    with bus.consumer("events.dead", start="earliest") as d:
        dead = d.poll_batch(10, timeout=2)
        assert sorted(m.value for m in dead) == [b"bad1", b"bad2"]
        assert dead[0].headers["shmbus.error_type"] == "ValueError"


def test_a_batcher_needs_manual_acks_and_sane_bounds(bus, topic):
    with bus.consumer(topic) as c:
        with pytest.raises(shmbus.ConfigError, match="ack='manual'"):
            shmbus.Batcher(c, print)
    with bus.consumer(topic, group="g", ack="manual") as c:
        with pytest.raises(shmbus.ConfigError):
            shmbus.Batcher(c, print, max_size=0)
        with pytest.raises(shmbus.ConfigError):
            shmbus.Batcher(c, print, max_wait=-1)
        with pytest.raises(TypeError):
            shmbus.Batcher(c, "print")
