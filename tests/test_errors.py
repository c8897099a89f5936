"""The error contract (API.md "Errors" and "Details that are decided"): every error
class for its bad input, with its documented base classes, and after each bad
call nothing already published is lost (DESIGN invariant 8)."""
import time

import numpy as np
import pytest

import shmbus
from shmbus import (BusFull, ClosedError, ConfigMismatchError, InvalidNameError,
                    MessageReleasedError, MessageTooLargeError, ShmbusError, TopicExistsError,
                    TopicNotFoundError)

from _helpers import Witness, drain, segments_of

pytestmark = pytest.mark.timeout(30)

KEY_MAX = 1024
HEADERS_MAX = 16 * 1024
HEADER_ENTRY = 7  # u16 name length, u8 kind, u32 value length (shmbus/_headers.py)


# -- the family -------------------------------------------------------------------------

@pytest.mark.parametrize("cls, bases", [
    (shmbus.BusFull, ()),
    (shmbus.MessageTooLargeError, (ValueError,)),
    (shmbus.InvalidNameError, (ValueError,)),
    (shmbus.ConfigMismatchError, (ValueError,)),
    (shmbus.TopicNotFoundError, (LookupError,)),
    (shmbus.TopicExistsError, (FileExistsError,)),
    (shmbus.CorruptSegmentError, ()),
    (shmbus.ClosedError, ()),
    (shmbus.MessageReleasedError, ()),
])
def test_error_classes_have_documented_bases(cls, bases):
    assert issubclass(cls, shmbus.ShmbusError)
    assert issubclass(cls, Exception)
    for base in bases:
        assert issubclass(cls, base)


# -- MessageTooLargeError ---------------------------------------------------------------

def test_value_over_max_message_size(bus):
    w = Witness(bus, max_message_size=100)
    with pytest.raises(MessageTooLargeError) as e:
        w.producer.send(b"x" * 101)
    assert isinstance(e.value, ValueError)
    with pytest.raises(MessageTooLargeError):
        w.producer.send(bytearray(101), key=b"k", headers={"a": "b"})
    with pytest.raises(MessageTooLargeError):
        w.producer.send_many([b"ok", b"x" * 101])  # nothing of the batch is published
    w.check()


def test_max_message_size_is_inclusive_and_counts_the_value_only(bus):
    bus.create_topic("t", capacity=65536, max_message_size=100)
    c = bus.consumer("t", start="earliest")
    p = bus.producer("t")
    assert p.send(b"v" * 100) is not None
    # the key and headers have their own limits, not max_message_size
    assert p.send(b"w" * 100, key=b"k" * KEY_MAX, headers={"h": "x" * 1000}) is not None
    assert p.send_many([b"a" * 100, b"b" * 100]) == 2
    with pytest.raises(MessageTooLargeError):
        p.send(b"v" * 101)
    got = [c.poll(timeout=2.0) for _ in range(4)]
    assert [m.value for m in got] == [b"v" * 100, b"w" * 100, b"a" * 100, b"b" * 100]
    assert got[1].key == b"k" * KEY_MAX and got[1].headers == {"h": "x" * 1000}
    c.close()
    p.close()


def test_key_limit_is_1_kib(bus):
    w = Witness(bus, capacity=65536)
    assert w.producer.send(b"v", key=b"k" * KEY_MAX) is not None
    w.sent.append(b"v")
    for key in (b"k" * (KEY_MAX + 1), "k" * (KEY_MAX + 1), "é" * (KEY_MAX // 2 + 1)):
        # the str key counts in UTF-8 bytes: 513 x "é" is 1026 bytes
        with pytest.raises(MessageTooLargeError):
            w.producer.send(b"v", key=key)
    with pytest.raises(MessageTooLargeError):
        w.producer.send_many([b"a", b"b"], key=b"k" * (KEY_MAX + 1))
    w.check()


def test_headers_limit_is_16_kib_encoded(bus):
    w = Witness(bus, capacity=65536)
    fits = {"h": "x" * (HEADERS_MAX - HEADER_ENTRY - 1)}  # exactly 16 KiB encoded
    assert w.producer.send(b"v", headers=fits) is not None
    w.sent.append(b"v")
    with pytest.raises(MessageTooLargeError):
        w.producer.send(b"v", headers={"h": "x" * (HEADERS_MAX - HEADER_ENTRY)})
    with pytest.raises(MessageTooLargeError):
        w.producer.send(b"v", headers={f"h{i}": b"y" * 1000 for i in range(17)})
    w.check()


def _fill(bus, topic):
    """Fill a topic (sized by max_messages) until it refuses; return the values."""
    sent = []
    with bus.producer(topic, on_full="error") as filler:
        for i in range(10_000):
            try:
                filler.send(b"fill-%d" % i)
            except BusFull:
                return sent
            sent.append(b"fill-%d" % i)
    raise AssertionError("the topic never filled up")


@pytest.mark.timeout(20)
def test_too_large_is_raised_at_once_even_when_the_ring_is_full(bus):
    """on_full="block" without a timeout would wait for ever: the size check must
    come first.  The pytest timeout is the guard against a wait."""
    bus.create_topic("t", capacity=65536, max_messages=16, max_message_size=100, on_full="block")
    c = bus.consumer("t", start="earliest")
    sent = _fill(bus, "t")
    assert len(sent) == 16
    p = bus.producer("t", timeout=None)
    big_array = np.zeros(101, dtype=np.uint8)
    calls = [
        lambda: p.send(b"x" * 101),
        lambda: p.send(b"x" * 101, timeout=None),
        lambda: p.send(b"x", key=b"k" * (KEY_MAX + 1)),
        lambda: p.send(b"x", headers={"h": "x" * HEADERS_MAX}),
        lambda: p.send_many([b"x" * 101]),
        lambda: p.send_many([b"x"], key=b"k" * (KEY_MAX + 1)),
        lambda: p.send_array(big_array),
    ]
    for call in calls:
        t0 = time.monotonic()
        with pytest.raises(MessageTooLargeError):
            call()
        assert time.monotonic() - t0 < 2.0
    assert drain(c, len(sent)) == sent  # nothing lost
    assert c.poll(timeout=0) is None
    p.close()
    c.close()


# -- BusFull ----------------------------------------------------------------------------

def test_bus_full_with_on_full_error(bus):
    bus.create_topic("t", capacity=4096, max_messages=16, on_full="error")
    c = bus.consumer("t", start="earliest")
    p = bus.producer("t")
    sent = []
    with pytest.raises(BusFull):
        for i in range(100):
            p.send(b"m%d" % i)
            sent.append(b"m%d" % i)
    assert len(sent) == 16
    with pytest.raises(BusFull):
        p.send_many([b"more"])
    assert drain(c, len(sent)) == sent
    assert c.poll(timeout=0) is None
    # room again once consumed (the consumer commits at its next poll)
    assert p.send(b"after") is not None
    assert c.poll(timeout=2.0).value == b"after"
    p.close()
    c.close()


@pytest.mark.timeout(20)
def test_bus_full_when_block_times_out(bus):
    bus.create_topic("t", capacity=4096, max_messages=16)  # on_full="block"
    c = bus.consumer("t", start="earliest")
    sent = _fill(bus, "t")
    for p, kwargs in ((bus.producer("t", timeout=0.2), {}),
                      (bus.producer("t"), {"timeout": 0.2})):
        t0 = time.monotonic()
        with pytest.raises(BusFull):
            p.send(b"late", **kwargs)
        assert 0.15 <= time.monotonic() - t0 < 5.0
        t0 = time.monotonic()
        with pytest.raises(BusFull):
            p.send_many([b"late"], **kwargs)
        assert 0.15 <= time.monotonic() - t0 < 5.0
        p.close()
    assert drain(c, len(sent)) == sent
    assert c.poll(timeout=0) is None
    c.close()


def test_producer_on_full_override(bus):
    bus.create_topic("t", capacity=4096, max_messages=16)  # block by default
    c = bus.consumer("t", start="earliest")
    sent = _fill(bus, "t")  # uses on_full="error": raises at once instead of blocking
    with bus.producer("t", on_full="drop_newest") as p:
        assert p.send(b"dropped") is None
        assert p.send_many([b"d1", b"d2"]) == 0
    assert bus.stats("t")["partitions"][0]["dropped_full"] == 3
    assert drain(c, len(sent)) == sent
    assert c.poll(timeout=0) is None
    c.close()


# -- InvalidNameError -------------------------------------------------------------------

INVALID_NAMES = ["", "a" * 101, "a/b", "a:b", ".hidden", "café", "naïve", "日本",
                 "a b", " a", "a ", "a\n", "a\tb", "a\x00b", "a*b", "..", "."]


@pytest.mark.parametrize("name", INVALID_NAMES)
def test_invalid_bus_name(name):
    with pytest.raises(InvalidNameError) as e:
        shmbus.Bus(name)
    assert isinstance(e.value, ValueError)


@pytest.mark.parametrize("name", INVALID_NAMES)
def test_invalid_topic_and_group_names(bus, name):
    w = Witness(bus)
    for call in (lambda: bus.create_topic(name),
                 lambda: bus.create_topic(name, exist_ok=True),
                 lambda: bus.producer(name),
                 lambda: bus.consumer(name),
                 lambda: bus.delete_topic(name),
                 lambda: bus.topic_info(name),
                 lambda: bus.consumer(w.topic, group=name)):
        with pytest.raises(InvalidNameError) as e:
            call()
        assert isinstance(e.value, ValueError)
    assert bus.topics() == [w.topic]
    w.check()


@pytest.mark.parametrize("name", [123, None, b"abc"])
def test_name_of_wrong_type_is_a_type_error(bus, name):
    with pytest.raises(TypeError):
        shmbus.Bus(name)
    with pytest.raises(TypeError):
        bus.create_topic(name)


def test_valid_edge_names(bus_name):
    names = [bus_name.ljust(100, "x"), f"{bus_name}.b_c-d", f"_{bus_name}", f"-{bus_name}",
             f"{bus_name}."]
    topics = ["t" * 100, "a.b_c-d", "A9", "0", "_x", "-x", "x.", "a..b"]
    for name in names:
        b = shmbus.Bus(name)
        try:
            assert b.name == name
            for t in topics:
                b.create_topic(t, capacity=4096)
            assert sorted(b.topics()) == sorted(topics)
            for t in topics:
                with b.consumer(t) as c, b.producer(t) as p:
                    p.send(t.encode())
                    assert c.poll(timeout=2.0).value == t.encode()
            assert len(segments_of(name)) == 1 + 2 * len(topics)
        finally:
            b.unlink()
            b.close()
        assert segments_of(name) == []


# -- ConfigMismatchError, TopicExistsError, TopicNotFoundError -----------------------------

def test_topic_exists(bus):
    w = Witness(bus, partitions=1)
    for kwargs in ({}, {"partitions": 1}, {"capacity": 4096}):
        with pytest.raises(TopicExistsError) as e:
            bus.create_topic(w.topic, **kwargs)
        assert isinstance(e.value, FileExistsError)
    w.check()


@pytest.mark.parametrize("option", [
    {"partitions": 2}, {"capacity": 2**20}, {"max_message_size": 1000}, {"on_full": "error"},
    {"mode": 0o640}, {"max_messages": 64}, {"dedup_window": 5.0},
])
def test_config_mismatch(bus, option):
    w = Witness(bus)
    with pytest.raises(ConfigMismatchError) as e:
        bus.create_topic(w.topic, exist_ok=True, **option)
    assert isinstance(e.value, ValueError)
    w.check()


def test_topic_not_found(bus):
    w = Witness(bus)
    for call in (lambda: bus.producer("missing"),
                 lambda: bus.consumer("missing"),
                 lambda: bus.consumer("missing", start="earliest"),
                 lambda: bus.delete_topic("missing"),
                 lambda: bus.topic_info("missing"),
                 lambda: bus.stats("missing")):
        with pytest.raises(TopicNotFoundError) as e:
            call()
        assert isinstance(e.value, LookupError)
    assert bus.topics() == [w.topic]
    assert segments_of(bus.name, "missing") == []
    w.check()


# -- ClosedError ------------------------------------------------------------------------

def test_closed_bus(bus):
    other = shmbus.Bus(bus.name)  # the fixture's bus stays open to remove everything
    other.create_topic("t")
    p = other.producer("t")
    c = other.consumer("t", start="earliest")
    p.send(b"before")
    other.close()
    assert other.closed
    other.close()  # twice is fine
    for call in (lambda: other.create_topic("u"),
                 lambda: other.create_topic("t", exist_ok=True),
                 lambda: other.topics(),
                 lambda: other.topic_info("t"),
                 lambda: other.stats("t"),
                 lambda: other.producer("t"),
                 lambda: other.consumer("t"),
                 lambda: other.delete_topic("t")):
        with pytest.raises(ClosedError):
            call()
    # producers and consumers made from it keep working until they are closed
    p.send(b"after")
    assert drain(c, 2) == [b"before", b"after"]
    p.close()
    c.close()
    assert bus.topics() == ["t"]


def test_closed_producer(bus):
    w = Witness(bus)
    p = bus.producer(w.topic)
    p.send(b"from-p")
    w.sent.append(b"from-p")
    p.close()
    assert p.closed
    p.close()  # twice is fine
    for call in (lambda: p.send(b"x"),
                 lambda: p.send(b"x", key=b"k", headers={"a": "b"}),
                 lambda: p.send_many([b"x", b"y"]),
                 lambda: p.send_array(np.arange(3))):
        with pytest.raises(ClosedError):
            call()
    with bus.producer(w.topic) as q:
        pass
    with pytest.raises(ClosedError):
        q.send(b"x")
    w.check()


def test_closed_consumer(bus):
    w = Witness(bus)
    c = bus.consumer(w.topic, start="earliest")
    assert c.poll(timeout=2.0).value == w.sent[0]  # and more are prefetched
    c.close()
    assert c.closed
    c.close()  # twice is fine
    for call in (lambda: c.poll(timeout=0), lambda: c.poll(timeout=1.0),
                 lambda: c.poll_batch(10, timeout=0), lambda: c.lag()):
        with pytest.raises(ClosedError):
            call()
    assert list(c) == []  # iteration ends quietly
    w.check()


# -- bad configuration values: ShmbusError and ValueError ------------------------------------

def _assert_config_error(call):
    with pytest.raises(ShmbusError) as e:
        call()
    assert isinstance(e.value, ValueError), type(e.value)


@pytest.mark.parametrize("kwargs", [
    {"partitions": 0}, {"partitions": -1}, {"partitions": 1025}, {"on_full": "sometimes"},
    {"on_full": "BLOCK"}, {"capacity": 0}, {"capacity": -4096}, {"max_message_size": 0},
    {"capacity": 4096, "max_message_size": 8192}, {"mode": -1}, {"mode": 0o1600},
    {"retention": "forever"}, {"fsync": "sometimes"}, {"dedup_window": -1.0},
    {"max_messages": 0},
])
def test_bad_topic_configuration(bus, kwargs):
    w = Witness(bus)
    _assert_config_error(lambda: bus.create_topic("t", **kwargs))
    _assert_config_error(lambda: bus.create_topic(w.topic, exist_ok=True, **kwargs))
    assert bus.topics() == [w.topic]
    assert segments_of(bus.name, "t") == []
    w.check()


def test_bad_producer_and_consumer_configuration(bus):
    w = Witness(bus)
    _assert_config_error(lambda: bus.producer(w.topic, on_full="sometimes"))
    _assert_config_error(lambda: bus.producer(w.topic, timeout=-1))
    _assert_config_error(lambda: bus.producer(w.topic, timeout=-0.001))
    _assert_config_error(lambda: bus.producer(w.topic, timeout=float("nan")))
    for start in ("oldest", "EARLIEST", "", "now"):
        _assert_config_error(lambda: bus.consumer(w.topic, start=start))
    _assert_config_error(lambda: bus.consumer(w.topic, ack="sometimes"))
    _assert_config_error(lambda: bus.consumer(w.topic, ordering="random"))
    w.check()


def test_negative_timeout_of_a_waiting_call(bus):
    """The calls that would wait (an empty topic, a full one) refuse a negative timeout."""
    bus.create_topic("t", capacity=4096, max_messages=16)
    c = bus.consumer("t", start="earliest")
    _assert_config_error(lambda: c.poll(timeout=-1))
    _assert_config_error(lambda: c.poll(timeout=-0.5))
    _assert_config_error(lambda: c.poll_batch(10, timeout=-1))
    _assert_config_error(lambda: c.poll_batch(0, timeout=0))
    _assert_config_error(lambda: c.poll_batch(-5, timeout=0))
    sent = _fill(bus, "t")
    with bus.producer("t") as p:
        _assert_config_error(lambda: p.send(b"x", timeout=-1))
        _assert_config_error(lambda: p.send_many([b"x"], timeout=-1))
    assert drain(c, len(sent)) == sent
    c.close()


@pytest.mark.parametrize("call", ["send", "send_many", "send_array", "poll", "poll_batch"])
def test_negative_timeout_is_refused_even_when_no_wait_is_needed(bus, call):
    w = Witness(bus)
    calls = {
        "send": lambda: w.producer.send(b"x", timeout=-1),
        "send_many": lambda: w.producer.send_many([b"x"], timeout=-1),
        "send_array": lambda: w.producer.send_array(np.arange(2), timeout=-1),
        "poll": lambda: w.consumer.poll(timeout=-1),
        "poll_batch": lambda: w.consumer.poll_batch(10, timeout=-1),
    }
    _assert_config_error(calls[call])
    w.check()


def test_bad_partition_argument_is_a_shmbus_error(bus):
    w = Witness(bus, partitions=2)
    for call in (lambda: w.producer.send(b"x", partition=2),
                 lambda: w.producer.send(b"x", key=b"k", partition=7),
                 lambda: w.producer.send_many([b"x"], partition=2)):
        with pytest.raises(ShmbusError):
            call()
    for call in (lambda: w.producer.send(b"x", partition="0"),
                 lambda: w.producer.send_many([b"x"], partition=1.0)):
        with pytest.raises(TypeError):
            call()
    w.check()


def test_negative_partition_is_a_shmbus_value_error(bus):
    w = Witness(bus, partitions=2)
    _assert_config_error(lambda: w.producer.send(b"x", partition=-1))


def test_partition_out_of_range_is_also_a_value_error(bus):
    w = Witness(bus, partitions=2)
    _assert_config_error(lambda: w.producer.send(b"x", partition=2))


# -- wrong types: TypeError -------------------------------------------------------------

@pytest.mark.parametrize("kwargs", [
    {"partitions": "1"}, {"partitions": 1.0}, {"partitions": True}, {"capacity": "4096"},
    {"capacity": 4096.0}, {"max_message_size": "1"}, {"on_full": 1}, {"on_full": None},
    {"mode": "0600"}, {"max_messages": 16.0}, {"dedup_window": "1"},
])
def test_wrong_types_in_topic_configuration(bus, kwargs):
    w = Witness(bus)
    with pytest.raises(TypeError):
        bus.create_topic("t", **kwargs)
    assert segments_of(bus.name, "t") == []
    w.check()


def test_wrong_types_in_send(bus):
    w = Witness(bus)
    p = w.producer
    for call in (lambda: p.send("text"),
                 lambda: p.send("text", key=b"k"),
                 lambda: p.send(None),
                 lambda: p.send(123),
                 lambda: p.send(b"x", key=123),
                 lambda: p.send(b"x", key=1.5),
                 lambda: p.send(b"x", key=["k"]),
                 lambda: p.send(b"x", headers={"a": 1}),
                 lambda: p.send(b"x", headers={"a": None}),
                 lambda: p.send(b"x", headers={"a": 1.5}),
                 lambda: p.send(b"x", headers={1: "a"}),
                 lambda: p.send(b"x", headers=[("a", "b")]),
                 lambda: p.send_many(["a", "b"]),
                 lambda: p.send_many([b"a", "b"]),
                 lambda: p.send_many([b"a"], key=123),
                 lambda: p.send_many(None),
                 lambda: p.send_array([1, 2, 3]),
                 lambda: p.send_array(np.array([object()])),
                 lambda: p.send_array(np.arange(3), headers={"a": 1})):
        with pytest.raises(TypeError):
            call()
    w.check()


def test_timeout_of_wrong_type_is_refused_even_when_no_wait_is_needed(bus):
    w = Witness(bus)
    with pytest.raises(TypeError):
        w.producer.send(b"x", timeout="1")


def test_wrong_types_in_consumer_calls(bus):
    w = Witness(bus)
    with pytest.raises(TypeError):
        bus.consumer(w.topic, start=0)
    with pytest.raises(TypeError):
        bus.producer(w.topic, timeout="1")
    with pytest.raises(TypeError):
        bus.producer(w.topic, on_full=1)
    c = bus.consumer(w.topic)  # latest: nothing to read, so poll would wait
    with pytest.raises(TypeError):
        c.poll(timeout="1")
    with pytest.raises(TypeError):
        c.poll_batch("10")
    with pytest.raises(TypeError):
        c.poll_batch(10, timeout="0.1")
    c.close()
    w.check()


# -- MessageReleasedError ---------------------------------------------------------------

def test_view_after_a_later_poll_raises_message_released(bus):
    bus.create_topic("t")
    c = bus.consumer("t", start="earliest")
    with bus.producer("t") as p:
        p.send_many([b"one", b"two", b"three"])
    m = c.poll(timeout=2.0)
    assert bytes(m.view()) == b"one"
    assert c.poll(timeout=2.0).value == b"two"
    with pytest.raises(MessageReleasedError) as e:
        m.view()
    assert isinstance(e.value, ShmbusError)
    # the bad call lost nothing: the rest still comes, and the released value is readable
    assert c.poll(timeout=2.0).value == b"three"
    assert m.value == b"one"
    assert c.poll(timeout=0) is None
    c.close()
