"""Unit-level behaviour of the public API in one process, plus small spawn children
where a second process is the point (Ctrl-C)."""
import os
import signal
import sys
import threading
import time

import numpy as np
import pytest

import shmbus
from shmbus import MessageReleasedError, Offset, TopicNotFoundError

from _helpers import drain, mode_bits, segments_of

pytestmark = pytest.mark.timeout(30)

KEYBOARD_INTERRUPT_EXIT = 42


def u8(buffer):
    return np.frombuffer(buffer, dtype=np.uint8)


# -- segment permission bits ------------------------------------------------------------

@pytest.mark.parametrize("umask", [0o000, 0o077, 0o022, 0o027])
@pytest.mark.parametrize("mode", [None, 0o600, 0o640, 0o660, 0o644, 0o400])
def test_segment_mode_whatever_the_umask(bus, umask, mode):
    old = os.umask(umask)
    try:
        if mode is None:
            bus.create_topic("t", partitions=3, capacity=4096)
        else:
            bus.create_topic("t", partitions=3, capacity=4096, mode=mode)
    finally:
        os.umask(old)
    want = 0o600 if mode is None else mode
    segs = segments_of(bus.name, "t")
    assert segs == [f"shmbus:{bus.name}:t:{part}" for part in ("meta", "p0", "p1", "p2")]
    assert {s: mode_bits(s) for s in segs} == {s: want for s in segs}
    assert bus.topic_info("t")["mode"] == want


@pytest.mark.parametrize("umask", [0o000, 0o077])
def test_bus_segment_is_owner_only_whatever_the_umask(bus_name, umask):
    old = os.umask(umask)
    try:
        b = shmbus.Bus(bus_name)
    finally:
        os.umask(old)
    try:
        assert mode_bits(f"shmbus:{bus_name}") == 0o600
    finally:
        b.unlink()
        b.close()


# -- exist_ok and the stored configuration -------------------------------------------------

def test_exist_ok_compares_only_the_options_given(bus):
    bus.create_topic("t", partitions=2, capacity=5000, max_message_size=1000, on_full="error",
                     mode=0o640, max_messages=100)
    info = bus.topic_info("t")
    # nothing given: nothing compared (the defaults would differ from every option)
    bus.create_topic("t", exist_ok=True)
    bus.create_topic("t", partitions=2, exist_ok=True)
    bus.create_topic("t", on_full="error", mode=0o640, exist_ok=True)
    bus.create_topic("t", capacity=8192, exist_ok=True)  # what 5000 was rounded to
    bus.create_topic("t", capacity=5000, exist_ok=True)  # rounds to the same
    bus.create_topic("t", capacity=4097, exist_ok=True)
    bus.create_topic("t", max_messages=100, exist_ok=True)  # exact, not rounded
    bus.create_topic("t", max_message_size=1000, partitions=2, capacity=8192, exist_ok=True)
    for mismatch in ({"partitions": 1}, {"capacity": 4096}, {"capacity": 8193},
                     {"max_message_size": 999}, {"on_full": "block"}, {"mode": 0o600},
                     {"partitions": 2, "on_full": "drop_newest"}, {"max_messages": 128}):
        with pytest.raises(shmbus.ConfigMismatchError):
            bus.create_topic("t", exist_ok=True, **mismatch)
    assert bus.topic_info("t") == info  # nothing was changed by any of it
    assert bus.topics() == ["t"]


def test_exist_ok_creates_a_missing_topic(bus):
    bus.create_topic("t", partitions=3, exist_ok=True, capacity=65536)
    assert bus.topic_info("t")["partitions"] == 3


@pytest.mark.parametrize("asked, stored", [
    (64, 64), (100, 128), (1000, 1024), (1024, 1024), (1025, 2048), (5000, 8192),
    (65536, 65536), (3 * 2**20, 4 * 2**20),
])
def test_capacity_is_reported_rounded_up_to_a_power_of_two(bus, asked, stored):
    bus.create_topic("t", capacity=asked, max_message_size=64)
    info = bus.topic_info("t")
    assert info["capacity"] == stored
    assert info["max_message_size"] == 64
    assert info["partitions"] == 1


def test_topic_info_defaults(bus):
    bus.create_topic("t")
    info = bus.topic_info("t")
    assert info["partitions"] == 1
    assert info["capacity"] == 64 * 2**20
    assert info["max_message_size"] == 2**20
    assert info["mode"] == 0o600
    assert info["max_messages"] & (info["max_messages"] - 1) == 0  # a power of two
    assert info["on_full"] == "block" and info["retention"] == "consumed"
    bus.create_topic("small", capacity=4096)
    # the default max_message_size never exceeds the capacity
    assert bus.topic_info("small")["max_message_size"] == 4096


# -- keys and headers -------------------------------------------------------------------

def test_headers_keep_their_value_types(bus):
    bus.create_topic("t")
    headers = {"s": "text", "b": b"\x00\xffbytes", "empty-s": "", "empty-b": b"",
               "unicode": "ünïcødé ✓", "looks-like-bytes": "b'x'", "ba": bytearray(b"ba"),
               "mv": memoryview(b"mv"), "ключ": "значение"}
    with bus.consumer("t") as c, bus.producer("t") as p:
        p.send(b"v", headers=headers)
        p.send(b"v")
        p.send(b"v", headers={})
        p.send(b"v", key=b"k")
        m = c.poll(timeout=2.0)
        got = m.headers
        assert got == {"s": "text", "b": b"\x00\xffbytes", "empty-s": "", "empty-b": b"",
                       "unicode": "ünïcødé ✓", "looks-like-bytes": "b'x'", "ba": b"ba",
                       "mv": b"mv", "ключ": "значение"}
        assert list(got) == list(headers)  # order kept too
        for name in ("s", "empty-s", "unicode", "looks-like-bytes", "ключ"):
            assert type(got[name]) is str
        for name in ("b", "empty-b", "ba", "mv"):
            assert type(got[name]) is bytes
        for _ in range(3):  # no headers, or empty ones: {}
            m = c.poll(timeout=2.0)
            assert m.headers == {} and type(m.headers) is dict


def test_str_key_is_its_utf8_bytes(bus):
    bus.create_topic("t", partitions=7, capacity=65536)
    keys = ["user-42", "é", "ключ", "日本語", "a" * 1000, "🙂"]
    with bus.consumer("t") as c, bus.producer("t") as p:
        for key in keys:
            a = p.send(b"str", key=key)
            b = p.send(b"bytes", key=key.encode("utf-8"))
            assert a.partition == b.partition  # the same partition as those bytes
            assert p.send_many([b"many"], key=key) == 1
        msgs = []
        deadline = time.monotonic() + 5
        while len(msgs) < 3 * len(keys) and time.monotonic() < deadline:
            m = c.poll(timeout=0.1)
            if m is not None:
                msgs.append((m.key, m.partition, m.value))
        assert len(msgs) == 3 * len(keys)
        for key in keys:
            mine = [(part, v) for k, part, v in msgs if k == key.encode("utf-8")]
            assert sorted(v for _, v in mine) == [b"bytes", b"many", b"str"]
            assert len({part for part, _ in mine}) == 1
            assert all(type(k) is bytes for k, _, _ in msgs)


def test_no_key_gives_none(bus):
    bus.create_topic("t")
    with bus.consumer("t") as c, bus.producer("t") as p:
        p.send(b"v")
        p.send_many([b"w"])
        assert c.poll(timeout=2.0).key is None
        assert c.poll(timeout=2.0).key is None


def test_a_key_lands_on_the_same_partition_every_time(bus):
    bus.create_topic("t", partitions=5, capacity=65536)
    with bus.producer("t") as p, bus.producer("t") as q:
        for i in range(50):
            key = f"k{i}"
            parts = {p.send(b"x", key=key).partition, q.send(b"y", key=key).partition,
                     p.send(b"z", key=key.encode()).partition}
            assert len(parts) == 1


# -- view(): zero copy, valid until the next poll ---------------------------------------------

def test_view_is_zero_copy_while_held(bus):
    bus.create_topic("t")
    a = bus.consumer("t")
    b = bus.consumer("t")
    with bus.producer("t") as p:
        p.send(b"payload-0123456789", key=b"k", headers={"h": "v"})
    ma, mb = a.poll(timeout=2.0), b.poll(timeout=2.0)
    va, vb = ma.view(), mb.view()
    assert isinstance(va, memoryview)
    assert bytes(va) == ma.value == b"payload-0123456789"
    assert len(va) == len(ma.value)
    # two views of the one message, even from two groups, are the same bytes in the ring
    assert np.shares_memory(u8(va), u8(ma.view()))
    assert np.shares_memory(u8(va), u8(vb))
    # value is a copy
    assert not np.shares_memory(u8(va), u8(ma.value))
    a.close()
    b.close()


def test_view_is_valid_until_the_next_poll(bus):
    bus.create_topic("t")
    c = bus.consumer("t")
    with bus.producer("t") as p:
        p.send_many([b"m0", b"m1", b"m2"])
    m0 = c.poll(timeout=2.0)
    assert bytes(m0.view()) == b"m0"
    assert bytes(m0.view()) == b"m0"  # as often as asked
    m1 = c.poll(timeout=2.0)
    with pytest.raises(MessageReleasedError):
        m0.view()
    assert bytes(m1.view()) == b"m1"
    # a poll that finds nothing releases too
    m2 = c.poll(timeout=2.0)
    assert c.poll(timeout=0) is None
    with pytest.raises(MessageReleasedError):
        m2.view()
    with pytest.raises(MessageReleasedError):
        m1.view()
    c.close()


def test_batch_views_are_valid_until_the_next_poll(bus):
    bus.create_topic("t")
    c = bus.consumer("t")
    with bus.producer("t") as p:
        p.send_many([b"a", b"b", b"c", b"d"])
    batch = c.poll_batch(3, timeout=2.0)
    assert [bytes(m.view()) for m in batch] == [b"a", b"b", b"c"]
    rest = c.poll_batch(10, timeout=2.0)
    assert [bytes(m.view()) for m in rest] == [b"d"]
    for m in batch:
        with pytest.raises(MessageReleasedError):
            m.view()
    assert c.poll_batch(10, timeout=0) == []
    with pytest.raises(MessageReleasedError):
        rest[0].view()
    c.close()


def test_value_after_release_works_until_the_ring_wraps(bus):
    bus.create_topic("t", capacity=4096, max_messages=1024, on_full="error")
    c = bus.consumer("t")
    p = bus.producer("t")
    p.send(b"A" * 100, key=b"key-A", headers={"h": "A"})
    m = c.poll(timeout=2.0)
    p.send(b"B" * 8)
    n = c.poll(timeout=2.0)  # releases (and commits) m
    with pytest.raises(MessageReleasedError):
        m.view()
    # released, but the ring has not reused the bytes: still readable
    assert m.value == b"A" * 100
    assert m.key == b"key-A"
    assert m.headers == {"h": "A"}
    assert (m.partition, m.offset) == (0, 0)
    # now wrap the ring over m's bytes
    sent = 0
    while True:
        try:
            p.send(b"C" * 100)
        except shmbus.BusFull:
            break
        sent += 1
    assert sent * 104 > 4096 - 200  # the ring went round
    with pytest.raises(MessageReleasedError):
        m.value
    with pytest.raises(MessageReleasedError):
        m.key
    assert n.value == b"B" * 8  # still held: intact
    assert drain(c, sent) == [b"C" * 100] * sent
    p.close()
    c.close()


def test_close_releases_the_held_message(bus):
    """After close() a held message is released: never another message's bytes."""
    bus.create_topic("t", capacity=4096, max_messages=1024, on_full="error")
    c = bus.consumer("t")
    other = bus.consumer("t")
    p = bus.producer("t")
    p.send(b"A" * 100)
    m = c.poll(timeout=2.0)
    c.close()
    for _ in range(100):  # another group reads along, so the ring is reused
        p.send(b"B" * 100)
        assert other.poll(timeout=2.0) is not None
    try:
        value = m.value
    except MessageReleasedError:
        value = None
    assert value in (None, b"A" * 100), value[:10]  # never another message's bytes
    with pytest.raises(MessageReleasedError):
        m.view()
    other.close()
    p.close()


def test_view_is_read_only(bus):
    """A consumer must not be able to change what other groups read."""
    bus.create_topic("t")
    a = bus.consumer("t")
    b = bus.consumer("t")
    with bus.producer("t") as p:
        p.send(b"original")
    ma, mb = a.poll(timeout=2.0), b.poll(timeout=2.0)
    view = ma.view()
    assert view.readonly
    with pytest.raises(TypeError):
        view[0:1] = b"X"
    assert mb.value == b"original"
    arr = np.frombuffer(view, dtype=np.uint8)
    assert not arr.flags.writeable
    a.close()
    b.close()


# -- poll timing, poll_batch, send_many -----------------------------------------------------

def test_poll_timeout_zero_never_waits(bus):
    bus.create_topic("t")
    c = bus.consumer("t")
    t0 = time.monotonic()
    for _ in range(20):
        assert c.poll(timeout=0) is None
        assert c.poll_batch(10, timeout=0) == []
    assert time.monotonic() - t0 < 2.0  # twenty 0.1 s waits would be more
    c.close()


@pytest.mark.timeout(20)
def test_poll_timeout_returns_none_after_about_the_timeout(bus):
    bus.create_topic("t")
    c = bus.consumer("t")
    for call, empty in ((lambda: c.poll(timeout=0.2), None),
                        (lambda: c.poll_batch(100, timeout=0.2), [])):
        t0 = time.monotonic()
        assert call() == empty
        elapsed = time.monotonic() - t0
        assert 0.18 <= elapsed < 3.0, elapsed
    c.close()


@pytest.mark.timeout(20)
def test_poll_wakes_for_a_message_sent_while_waiting(bus):
    bus.create_topic("t")
    c = bus.consumer("t")

    def later():
        time.sleep(0.2)
        with bus.producer("t") as p:
            p.send(b"late")

    t = threading.Thread(target=later)
    t.start()
    m = c.poll(timeout=10.0)
    t.join(timeout=10)
    assert m is not None and m.value == b"late"
    c.close()


def test_poll_batch_respects_max_messages(bus):
    bus.create_topic("t")
    c = bus.consumer("t")
    with bus.producer("t") as p:
        assert p.send_many([b"%d" % i for i in range(10)]) == 10
    sizes = []
    values = []
    for _ in range(4):
        batch = c.poll_batch(3, timeout=2.0)
        sizes.append(len(batch))
        values += [m.value for m in batch]
    assert sizes == [3, 3, 3, 1]
    assert values == [b"%d" % i for i in range(10)]
    assert c.poll_batch(3, timeout=0.05) == []
    # poll and poll_batch share one stream
    with bus.producer("t") as p:
        p.send_many([b"x%d" % i for i in range(5)])
    assert c.poll(timeout=2.0).value == b"x0"
    assert [m.value for m in c.poll_batch(2, timeout=2.0)] == [b"x1", b"x2"]
    assert c.poll(timeout=2.0).value == b"x3"
    assert [m.value for m in c.poll_batch(1000, timeout=2.0)] == [b"x4"]
    assert c.poll_batch(1, timeout=0) == []
    c.close()


def test_send_many_returns_the_count_and_keeps_order(bus):
    bus.create_topic("t")
    c = bus.consumer("t")
    with bus.producer("t") as p:
        assert p.send_many([]) == 0
        values = [b"v%03d" % i for i in range(200)]
        assert p.send_many(values) == 200
        assert p.send_many(iter([b"gen-%d" % i for i in range(3)])) == 3
        assert p.send_many([bytearray(b"ba"), memoryview(b"mv"), np.frombuffer(b"np", np.uint8)]) == 3
        assert p.send_many([b"k1", b"k2"], key="kk") == 2
    got = [(m.value, m.key) for m in c.poll_batch(1000, timeout=2.0)]
    while len(got) < 208:
        batch = c.poll_batch(1000, timeout=2.0)
        assert batch
        got += [(m.value, m.key) for m in batch]
    assert [v for v, _ in got] == values + [b"gen-0", b"gen-1", b"gen-2", b"ba", b"mv", b"np",
                                             b"k1", b"k2"]
    assert [k for _, k in got] == [None] * 206 + [b"kk", b"kk"]
    c.close()


def test_send_many_counts_what_drop_newest_accepted(bus):
    bus.create_topic("t", capacity=4096, max_messages=16, on_full="drop_newest")
    c = bus.consumer("t")
    with bus.producer("t") as p:
        n = p.send_many([b"m%d" % i for i in range(40)])
        assert n == 16
        assert p.send(b"refused") is None
    assert drain(c, n) == [b"m%d" % i for i in range(n)]
    assert c.poll(timeout=0) is None
    assert bus.stats("t")["partitions"][0]["dropped_full"] == 40 - 16 + 1
    c.close()


@pytest.mark.parametrize("size", [4096, 3000])
def test_a_message_up_to_max_message_size_fits_in_a_drained_ring(bus, size):
    bus.create_topic("t", capacity=4096, max_messages=64, on_full="error")
    assert bus.topic_info("t")["max_message_size"] == 4096
    c = bus.consumer("t")
    with bus.producer("t") as p:
        p.send(b"a" * 1500)
        assert drain(c, 1) == [b"a" * 1500]
        assert c.poll(timeout=0) is None  # commits it: the ring is drained now
        assert p.send(b"b" * size) is not None
    assert drain(c, 1) == [b"b" * size]
    c.close()


def test_send_returns_offsets(bus):
    bus.create_topic("t", partitions=3, capacity=65536)
    with bus.producer("t") as p:
        assert p.send(b"a", partition=2) == Offset(2, 0)
        assert p.send(b"b", partition=2) == Offset(2, 1)
        assert p.send(b"c", partition=0) == Offset(0, 0)
        off = p.send(b"d", partition=2)
        assert off.partition == 2 and off.offset == 2
        assert isinstance(off, tuple)
    stats = bus.stats("t")["partitions"]
    assert [s["published"] for s in stats] == [1, 0, 3]


def test_message_fields(bus):
    bus.create_topic("t", partitions=2, capacity=65536)
    c = bus.consumer("t")
    before = time.time_ns()
    with bus.producer("t") as p:
        off = p.send(b"value", key=b"key", headers={"a": "b"}, partition=1)
    after = time.time_ns()
    m = c.poll(timeout=2.0)
    assert (m.topic, m.partition, m.offset) == ("t", off.partition, off.offset)
    assert type(m.value) is bytes and m.value == b"value"
    assert before - 10**9 <= m.timestamp <= after + 10**9
    assert m.delivery_count == 1 and m.lost_before == 0 and m.msg_id is None
    assert "offset=0" in repr(m)
    c.close()


# -- start="earliest" / "latest", lag ---------------------------------------------------

def test_start_earliest_gets_what_was_published_before_any_group(bus):
    bus.create_topic("t")
    with bus.producer("t") as p:
        p.send_many([b"early-0", b"early-1", b"early-2"])
    latest = bus.consumer("t", start="latest")
    earliest = bus.consumer("t", start="earliest")
    with bus.producer("t") as p:
        p.send(b"later")
    assert drain(earliest, 4) == [b"early-0", b"early-1", b"early-2", b"later"]
    assert drain(latest, 1) == [b"later"]
    assert latest.poll(timeout=0.1) is None
    assert earliest.poll(timeout=0) is None
    latest.close()
    earliest.close()


def test_default_start_is_latest(bus):
    bus.create_topic("t")
    with bus.producer("t") as p:
        p.send(b"old")
        c = bus.consumer("t")
        p.send(b"new")
    assert drain(c, 1) == [b"new"]
    assert c.poll(timeout=0.05) is None
    c.close()


def test_lag(bus):
    bus.create_topic("t", partitions=2, capacity=65536)
    c = bus.consumer("t", start="earliest")
    assert c.lag() == 0
    with bus.producer("t") as p:
        p.send_many([b"a", b"b", b"c"], partition=0)
        p.send(b"d", partition=1)
    assert c.lag() == 4
    assert len(drain(c, 4)) == 4
    assert c.poll(timeout=0) is None  # commits what was handed out
    assert c.lag() == 0
    c.close()


# -- iteration and close ----------------------------------------------------------------------

@pytest.mark.timeout(20)
def test_iteration_ends_quietly_when_closed_from_another_thread(bus):
    bus.create_topic("t")
    c = bus.consumer("t")
    with bus.producer("t") as p:
        p.send_many([b"a", b"b"])
    got = []

    def consume():
        for m in c:
            got.append(m.value)

    t = threading.Thread(target=consume)
    t.start()
    deadline = time.monotonic() + 5
    while len(got) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)  # it is waiting now
    c.close()
    t.join(timeout=5)
    assert not t.is_alive()
    assert got == [b"a", b"b"]


@pytest.mark.timeout(20)
def test_close_wakes_a_waiting_poll(bus):
    bus.create_topic("t")
    c = bus.consumer("t")
    result = []
    t = threading.Thread(target=lambda: result.append(c.poll(timeout=None)))
    t.start()
    time.sleep(0.2)
    c.close()
    t.join(timeout=5)
    assert not t.is_alive()
    assert result == [None]


# -- topics, delete, unlink, lifetime ---------------------------------------------------------

def test_topics(bus):
    assert bus.topics() == []
    for name in ("b", "a", "a.b", "a-b", "ab"):
        bus.create_topic(name, partitions=2, capacity=4096)
    assert sorted(bus.topics()) == ["a", "a-b", "a.b", "ab", "b"]
    bus.delete_topic("a")
    assert sorted(bus.topics()) == ["a-b", "a.b", "ab", "b"]


def test_delete_topic_removes_its_segments_and_recreating_works(bus):
    bus.create_topic("t", partitions=3, capacity=4096)
    bus.create_topic("t2", capacity=4096)  # a topic whose name starts like it
    with bus.producer("t") as p:
        p.send(b"old", partition=0)
    assert len(segments_of(bus.name, "t")) == 4
    bus.delete_topic("t")
    assert segments_of(bus.name, "t") == []
    assert bus.topics() == ["t2"]
    assert len(segments_of(bus.name, "t2")) == 2
    with pytest.raises(TopicNotFoundError):
        bus.producer("t")
    with pytest.raises(TopicNotFoundError):
        bus.delete_topic("t")
    # a new topic of the same name is a new topic
    bus.create_topic("t", partitions=2, capacity=8192)
    assert bus.topic_info("t")["partitions"] == 2
    assert bus.topic_info("t")["capacity"] == 8192
    c = bus.consumer("t", start="earliest")
    with bus.producer("t") as p:
        assert p.send(b"new", partition=1) == Offset(1, 0)
    assert drain(c, 1) == [b"new"]
    assert c.poll(timeout=0.05) is None
    c.close()


def test_recreated_topic_is_seen_by_another_bus_handle(bus):
    """A Bus that mapped a topic notices when another deletes and recreates it."""
    other = shmbus.Bus(bus.name)  # as another process would
    try:
        bus.create_topic("t")
        assert other.topic_info("t")["partitions"] == 1  # other maps the topic now
        bus.delete_topic("t")
        bus.create_topic("t", partitions=2, capacity=65536)
        c = bus.consumer("t", start="earliest")
        with other.producer("t") as p:
            p.send(b"to the new topic", partition=0)
        got = drain(c, 1, timeout=1.0)
        c.close()
        assert other.topic_info("t")["partitions"] == 2
        assert got == [b"to the new topic"]
    finally:
        other.close()


def test_unlink_removes_everything(bus_name):
    b = shmbus.Bus(bus_name)
    b.create_topic("a", partitions=3, capacity=4096)
    b.create_topic("b", capacity=4096)
    c = b.consumer("a")
    p = b.producer("b")
    assert len(segments_of(bus_name)) == 1 + 4 + 2
    b.unlink()
    assert segments_of(bus_name) == []
    c.close()
    p.close()
    b.close()
    assert segments_of(bus_name) == []
    # the name can be used again from scratch
    with shmbus.Bus(bus_name) as again:
        assert again.topics() == []
        again.unlink()
    assert segments_of(bus_name) == []


def test_bus_as_a_context_manager_and_close_removes_nothing(bus, bus_name):
    with shmbus.Bus(bus_name) as b:
        assert isinstance(b, shmbus.Bus) and b.name == bus_name and not b.closed
        b.create_topic("t", partitions=2, capacity=4096)
        with b.producer("t") as p:
            p.send(b"kept", partition=0)
        before = segments_of(bus_name)
    assert b.closed
    assert segments_of(bus_name) == before and len(before) == 4
    with pytest.raises(shmbus.ClosedError):
        b.topics()
    # the topic and its message are still there for the next opener
    c = bus.consumer("t", start="earliest")
    assert drain(c, 1) == [b"kept"]
    c.close()
    # a plain close removes nothing either
    third = shmbus.Bus(bus_name)
    third.close()
    third.close()
    assert segments_of(bus_name) == before
    assert bus.topics() == ["t"]


def test_bus_opens_an_existing_bus(bus):
    bus.create_topic("t")
    other = shmbus.Bus(bus.name)
    assert other.topics() == ["t"]
    c = bus.consumer("t")
    with other.producer("t") as p:
        p.send(b"across handles")
    assert drain(c, 1) == [b"across handles"]
    c.close()
    other.close()


def test_stats(bus):
    bus.create_topic("t", partitions=2, capacity=65536)
    c = bus.consumer("t")
    with bus.producer("t") as p:
        p.send_many([b"a", b"b"], partition=1)
    s = bus.stats("t")["partitions"]
    assert [x["published"] for x in s] == [0, 2]
    assert s[1]["bytes_in_use"] >= 2
    assert all(x["dropped_full"] == 0 for x in s)
    drain(c, 2)
    c.close()


# -- Ctrl-C ---------------------------------------------------------------------------------

def _block_in_poll(bus_name, ready):
    b = shmbus.Bus(bus_name)
    c = b.consumer("t")
    try:
        ready.set()
        c.poll(timeout=None)
    except KeyboardInterrupt:
        c.close()
        b.close()
        sys.exit(KEYBOARD_INTERRUPT_EXIT)
    sys.exit(1)


@pytest.mark.timeout(60)
def test_ctrl_c_interrupts_a_waiting_poll(bus, spawn):
    bus.create_topic("t")
    ready = spawn.Event()
    child = spawn.Process(target=_block_in_poll, args=(bus.name, ready))
    child.start()
    try:
        assert ready.wait(timeout=30), "the child did not start"
        time.sleep(0.5)  # well inside poll(timeout=None) by now
        assert child.is_alive()
        t0 = time.monotonic()
        os.kill(child.pid, signal.SIGINT)
        child.join(timeout=10)
        elapsed = time.monotonic() - t0
        assert child.exitcode == KEYBOARD_INTERRUPT_EXIT, child.exitcode
        assert elapsed < 2.0, elapsed  # ~1 s promised; generous
    finally:
        if child.is_alive():
            child.kill()
            child.join(timeout=10)


def test_ack_is_accepted_and_nack_refused_in_auto_mode(bus):
    bus.create_topic("t", capacity=2**16)
    with bus.consumer("t") as c, bus.producer("t") as p:
        p.send(b"a")
        m = c.poll(timeout=1.0)
        c.ack(m)
        c.ack([m])
        with pytest.raises(TypeError):
            c.ack("not a message")
        with pytest.raises(shmbus.ShmbusError):
            c.nack(m)
    with pytest.raises(shmbus.ClosedError):
        c.ack(m)


def test_drop_oldest_keeps_the_newest_for_the_first_group(bus):
    bus.create_topic("t", capacity=2**12, on_full="drop_oldest")
    with bus.producer("t", timeout=0.5) as p:
        for i in range(1000):  # many laps, nobody reading
            p.send(b"%04d" % i)
    assert bus.stats("t")["partitions"][0]["dropped_oldest"] > 0
    with bus.consumer("t", start="earliest") as c:
        got = [int(m.value) for m in c.poll_batch(1000, timeout=1)]
    assert got and got == list(range(got[0], 1000))


def test_log_retention_keeps_consumed_messages_for_replay(bus):
    bus.create_topic("t", capacity=2**16, retention="log")
    with bus.consumer("t") as a:
        with bus.producer("t") as p:
            for i in range(100):
                p.send(b"%d" % i)
        assert [int(m.value) for m in a.poll_batch(1000, timeout=1)] == list(range(100))
        a.poll(timeout=0)  # commits them: under "consumed" they would be gone now
        with bus.consumer("t", start="earliest") as late:  # a late reader replays them all
            assert [int(m.value) for m in late.poll_batch(1000, timeout=1)] == list(range(100))
        a.seek(0, 40)
        assert [int(m.value) for m in a.poll_batch(5, timeout=1)] == [40, 41, 42, 43, 44]
        a.seek(0, 0)
        assert int(a.poll(timeout=1).value) == 0
        a.seek_to_end()
        assert a.poll(timeout=0.05) is None
        stamp = time.time_ns()
        with bus.producer("t") as p:
            p.send(b"after")
        a.seek_to_beginning()
        assert int(a.poll(timeout=1).value) == 0
        a.seek_to_time(stamp)
        assert a.poll(timeout=1).value == b"after"
        with pytest.raises(shmbus.ConfigError):
            a.seek(0, 10**6)  # past the published end
        with pytest.raises(shmbus.ConfigError):
            a.seek(1, 0)  # no such partition
        with pytest.raises(TypeError):
            a.seek(0, "0")


def test_log_retention_limits_and_seeking_before_the_oldest(bus):
    bus.create_topic("t", capacity=2**16, retention="log", retention_bytes=2**10)
    with bus.producer("t") as p:
        for i in range(200):  # 8-byte records: the limit keeps the last 128
            p.send(b"%08d" % i)
    with bus.consumer("t", start="earliest") as c:
        got = [int(m.value) for m in c.poll_batch(1000, timeout=1)]
        assert got == list(range(got[0], 200)) and 60 <= got[0] <= 72
        c.seek(0, 0)  # before the oldest retained: lands on it
        assert int(c.poll(timeout=1).value) >= got[0]
    with pytest.raises(shmbus.ConfigError):
        bus.create_topic("u", capacity=2**12, retention="log", retention_bytes=2**13)
    with pytest.raises(shmbus.ConfigError):
        bus.create_topic("v", retention_seconds=5.0)  # a limit for "consumed"
    bus.create_topic("w", capacity=2**16, retention="log", retention_seconds=0.2)
    with bus.producer("w") as p:
        p.send(b"old")
    time.sleep(0.3)
    with bus.producer("w") as p:
        p.send(b"new")
    with bus.consumer("w", start="earliest") as c:
        assert c.poll(timeout=1).value == b"new"


def test_keyless_sends_are_spread_over_the_partitions(bus):
    """A producer sends keyless messages to each partition in turn (send and
    send_many alike); an empty key is a key, and lands where b"" hashes."""
    bus.create_topic("t", partitions=3, capacity=2**16)
    with bus.producer("t") as p:
        parts = [p.send(b"x").partition for _ in range(6)]
        assert sorted(parts) == [0, 0, 1, 1, 2, 2]
        empty = {p.send(b"x", key=b"").partition for _ in range(4)}
        assert len(empty) == 1


def test_max_messages_is_exact(bus):
    bus.create_topic("t", max_messages=5, on_full="block")
    assert bus.topic_info("t")["max_messages"] == 5
    c = bus.consumer("t", start="earliest")
    with bus.producer("t") as p:
        for i in range(5):
            p.send(b"%d" % i, timeout=0)
        with pytest.raises(shmbus.BusFull):
            p.send(b"sixth", timeout=0.2)             # five held: the sixth waits, then gives up
        assert [m.value for m in c.poll_batch(10, timeout=1)] == [b"%d" % i for i in range(5)]
        assert c.poll_batch(10, timeout=0) == []      # commits the five
        for i in range(5):
            p.send(b"again", timeout=0)
    with pytest.raises(shmbus.ConfigError):
        bus.create_topic("u", max_messages=0)
