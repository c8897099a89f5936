"""Producer msg_ids: a message whose id was sent to its partition within the
topic's dedup window is not published again (the C core keeps the ids)."""
import time

import pytest

import shmbus
from _procs import Flag

pytestmark = pytest.mark.timeout(90)
W = "_msg_id_workers:"


def values(bus, topic, n_max=100_000, timeout=1.0):
    """Everything in the topic, read by a fresh group: (msg_id, value) pairs."""
    out = []
    with bus.consumer(topic, group="reader", start="earliest") as c:
        while True:
            got = c.poll_batch(1000, timeout=timeout)
            if not got:
                return out
            out += [(m.msg_id, m.value) for m in got]
            assert len(out) <= n_max


def duplicates(bus, topic):
    return sum(p["duplicates"] for p in bus.stats(topic)["partitions"])


def test_the_same_msg_id_twice_arrives_once(bus):
    bus.create_topic("t", capacity=1 << 16)
    with bus.producer("t") as p:
        first = p.send(b"one", msg_id="order-1")
        assert p.send(b"again", msg_id="order-1") == first  # the Offset of the first
        assert p.send(b"as bytes", msg_id=b"order-1") == first  # a str id is its UTF-8
        assert p.send(b"two", msg_id="order-2") == (0, 1)
    assert values(bus, "t") == [("order-1", b"one"), ("order-2", b"two")]
    assert duplicates(bus, "t") == 2


def test_msg_ids_come_back_as_given_and_stay_out_of_the_headers(bus):
    bus.create_topic("t", capacity=1 << 16)
    with bus.producer("t") as p:
        p.send(b"a", msg_id="s", headers={"type": "created"})
        p.send(b"b", msg_id=b"\x00\xffraw")
        p.send(b"c")
    with bus.consumer("t", start="earliest") as c:
        got = [(m.msg_id, m.headers) for m in c.poll_batch(10, timeout=1.0)]
    assert got == [("s", {"type": "created"}), (b"\x00\xffraw", {}), (None, {})]


def test_a_keyless_id_goes_to_the_partition_it_picks(bus):
    bus.create_topic("t", partitions=4, capacity=1 << 16)
    with bus.producer("t") as p:
        offs = [p.send(b"x", msg_id=f"id-{i}") for i in range(40)]
        assert [p.send(b"y", msg_id=f"id-{i}") for i in range(40)] == offs
        assert len({o.partition for o in offs}) > 1  # spread, not all on one
        keyed = p.send(b"z", msg_id="id-0", key="k")
        assert p.send(b"z", msg_id="id-0", key="k") == keyed  # ids are kept per partition
    assert duplicates(bus, "t") == 41


def test_two_processes_sending_the_same_ids_publish_each_once(bus, procs, spawn):
    bus.create_topic("t", partitions=3, capacity=1 << 20)
    go = Flag(spawn)
    ids = list(range(3000))
    procs.start("a", W + "send_ids", bus_name=bus.name, topic="t", ids=ids, go=go)
    procs.start("b", W + "send_ids", bus_name=bus.name, topic="t", ids=ids[::-1], go=go)
    time.sleep(0.5)
    go.set()
    a, b = procs.result("a"), procs.result("b")
    assert a == b[::-1]  # both were told the one offset each id has
    got = values(bus, "t")
    assert sorted(int(v) for _, v in got) == ids
    assert duplicates(bus, "t") == len(ids)


def test_an_id_is_forgotten_after_the_window(bus):
    bus.create_topic("t", capacity=1 << 16, dedup_window=0.3)
    with bus.producer("t") as p:
        first = p.send(b"1", msg_id="x")
        assert p.send(b"2", msg_id="x") == first
        time.sleep(0.5)
        assert p.send(b"3", msg_id="x") != first
    assert [v for _, v in values(bus, "t")] == [b"1", b"3"]


def test_a_full_table_forgets_its_oldest_id_and_counts_it(bus):
    bus.create_topic("t", capacity=1 << 16, dedup_capacity=10)  # one bucket of ten
    assert bus.topic_info("t")["dedup_capacity"] == 10
    with bus.producer("t") as p:
        for i in range(11):
            p.send(b"v", msg_id=f"id-{i}")
        assert p.send(b"again", msg_id="id-0").offset == 11  # forgotten: sent again
        assert p.send(b"again", msg_id="id-10").offset == 10  # remembered
    stats = bus.stats("t")["partitions"][0]
    assert (stats["dedup_evicted"], stats["duplicates"]) == (2, 1)


def test_bad_msg_ids_and_topics_that_keep_none_are_refused(bus):
    bus.create_topic("t", capacity=1 << 16)
    bus.create_topic("none", capacity=1 << 16, dedup_capacity=0)
    with bus.producer("t") as p, bus.producer("none") as q:
        with pytest.raises(TypeError, match="msg_id must be str or bytes"):
            p.send(b"v", msg_id=42)
        with pytest.raises(shmbus.ConfigError, match="dedup_capacity=0"):
            q.send(b"v", msg_id="x")
        assert q.send(b"plain") == (0, 0)
        with pytest.raises(shmbus.MessageTooLargeError):
            p.send(b"v", msg_id="x" * 20000)
        assert p.send(b"ok", msg_id="x").offset == 0  # nothing of the refusals was kept
    with pytest.raises(shmbus.ConfigError, match="dedup_capacity"):
        bus.create_topic("big", dedup_capacity=2**30)
    with pytest.raises(TypeError):
        bus.create_topic("bad", dedup_capacity="many")


def test_a_drop_newest_refusal_keeps_no_id(bus):
    bus.create_topic("t", capacity=1 << 12, max_messages=2, on_full="drop_newest")
    with bus.producer("t") as p:
        p.send(b"1")
        p.send(b"2")
        assert p.send(b"3", msg_id="x") is None
    with bus.consumer("t", group="g", start="earliest") as c:
        assert len(c.poll_batch(10, timeout=1.0)) == 2
    with bus.producer("t") as p:
        assert p.send(b"3", msg_id="x") == (0, 2)  # the refused one goes now


def test_a_producer_killed_mid_send_does_not_keep_its_id(bus, procs):
    bus.create_topic("t", capacity=1 << 16)
    procs.start("dies", W + "send_and_die", env={"SHMBUS_FAULT": "after_claim:kill"},
                bus_name=bus.name, topic="t", msg_id="x")
    assert procs.join("dies", timeout=30) != 0
    with bus.producer("t") as p:
        off = p.send(b"second", msg_id="x")  # the first never made it: this one goes
        assert off.offset == 1 and p.send(b"third", msg_id="x") == off
    assert values(bus, "t") == [("x", b"second")]


def test_a_producer_killed_holding_a_bucket_does_not_block_it(bus, procs):
    bus.create_topic("t", capacity=1 << 16, dedup_capacity=10)  # every id in one bucket
    procs.start("dies", W + "send_and_die", env={"SHMBUS_FAULT": "dedup_locked:kill"},
                bus_name=bus.name, topic="t", msg_id="x")
    assert procs.join("dies", timeout=30) != 0
    with bus.producer("t") as p:
        t0 = time.monotonic()
        assert p.send(b"other", msg_id="y") == (0, 0)
        assert p.send(b"first", msg_id="x") == (0, 1)
        assert time.monotonic() - t0 < 5


def test_a_disk_bus_keeps_its_ids_across_a_restart(tmp_path, bus_name):
    with shmbus.Bus(bus_name, path=str(tmp_path)) as b:
        b.create_topic("t", capacity=1 << 16)
        with b.producer("t") as p:
            first = p.send(b"1", msg_id="x")
    with shmbus.Bus(bus_name, path=str(tmp_path)) as b:
        with b.producer("t") as p:
            assert p.send(b"2", msg_id="x") == first
        b.unlink()


def test_send_once_tells_whether_it_published(bus):
    bus.create_topic("t", capacity=1 << 16)
    with bus.producer("t") as p:
        assert p.send_once(b"1", "x") == ((0, 0), True)
        assert p.send_once(b"2", "x") == ((0, 0), False)
        assert p.send_once(b"3", b"y", key="k", headers={"h": "v"}) == ((0, 1), True)
        with pytest.raises(TypeError):
            p.send_once(b"4", None)
