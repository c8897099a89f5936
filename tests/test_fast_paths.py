"""The shortest paths written in C (shmbus/_fast.c) behave exactly as the Python
methods they stand for: same results, same errors, and they step aside for every
case they do not handle."""
import os

import pytest

import shmbus

pytestmark = pytest.mark.timeout(30)


def test_send_returns_the_same_offsets_on_both_paths(bus):
    bus.create_topic("t", capacity=2**16)
    c = bus.consumer("t")
    with bus.producer("t") as p:
        fast = p.send(b"a")                      # C: one bytes value, one partition
        general = p.send(bytearray(b"b"))        # Python: another buffer type
        keyed = p.send(b"c", key="k")            # Python: a key
        assert (fast, general, keyed) == ((0, 0), (0, 1), (0, 2))
        assert type(fast) is shmbus.Offset and fast.offset == 0 and fast.partition == 0
    assert [c.poll(5).value for _ in range(3)] == [b"a", b"b", b"c"]


def test_send_errors_come_from_the_general_path(bus):
    bus.create_topic("t", capacity=2**16, max_message_size=8, on_full="error")
    p = bus.producer("t")
    with pytest.raises(shmbus.MessageTooLargeError):
        p.send(b"123456789")
    with pytest.raises(TypeError):
        p.send("text")
    with pytest.raises(TypeError):
        p.send(b"x", b"k", None, None, None, None, "one too many")
    with pytest.raises(shmbus.ConfigError):
        p.send(b"x", timeout=-1)
    p.close()
    with pytest.raises(shmbus.ClosedError):
        p.send(b"x")


def test_poll_timeouts_are_checked_on_both_paths(bus):
    bus.create_topic("t", capacity=2**16)
    c = bus.consumer("t")
    with bus.producer("t") as p:
        p.send_many([b"1", b"2", b"3"])
    assert c.poll(5).value == b"1"               # fetches the three
    with pytest.raises(shmbus.ConfigError):
        c.poll(-1)                               # one is fetched, but the timeout is bad
    with pytest.raises(shmbus.ConfigError):
        c.poll(-1.5)
    assert c.poll(10**30).value == b"2"          # a huge int is a valid timeout
    assert c.poll(timeout=0).value == b"3"       # keyword: the general path
    assert c.poll(0) is None


def test_value_of_a_released_or_strange_message(bus):
    bus.create_topic("t", capacity=2**16)
    c = bus.consumer("t")
    with bus.producer("t") as p:
        p.send_many([b"first", b"second"])
    m = c.poll(5)
    c.poll(5)                                    # releases m: the general path copies it
    assert m.value == b"first"
    m._c = object()                              # not a consumer: no C access, a Python error
    with pytest.raises(AttributeError):
        m.value


def test_a_forked_child_gets_closed_error_on_the_fast_paths(bus):
    bus.create_topic("t", capacity=2**16)
    p = bus.producer("t")
    pid = os.fork()
    if pid == 0:  # the child: the parent's producer must refuse, not write
        try:
            p.send(b"x")
        except shmbus.ClosedError:
            os._exit(0)
        except BaseException:
            os._exit(2)
        os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert p.send(b"y") == (0, 0)               # the parent's producer still works
    p.close()


def test_the_one_call_take_passes_dead_letters_on_and_takes_the_next(bus):
    bus.create_topic("t", capacity=1 << 16)
    with bus.producer("t") as p:
        p.send(b"poison")
        p.send(b"fine")
    with bus.consumer("t", group="g", ack="manual", ordering="none", max_deliveries=1,
                      dead_letter="t.dead", start="earliest") as c:
        m = c.poll(timeout=1)
        assert m.value == b"poison"
        c.nack(m)  # its one delivery is used up: the next take passes it on
        assert c._take_copied(1.0) == (b"fine", 0)
        assert c._take_copied(0) is None
        assert c._take_copied_many(10, 0) == []
    with bus.consumer("t.dead", start="earliest") as d:
        assert d.poll(timeout=1).value == b"poison"
