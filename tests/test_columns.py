"""The columnar path: send_many of a numpy array (a message per row) and
Consumer.poll_columns (numpy columns, values left in the ring)."""
import numpy as np
import pytest

import shmbus

pytestmark = pytest.mark.timeout(60)


def stamped(first, n, size=64):
    """n rows of ``size`` bytes whose first and last 8 bytes hold first .. first+n-1."""
    a = np.zeros((n, size), np.uint8)
    v = a.view("<u8")
    v[:, 0] = np.arange(first, first + n)
    v[:, -1] = v[:, 0]
    return a


def test_rows_round_trip_with_their_columns(bus):
    bus.create_topic("t", capacity=2**20, max_message_size=64)
    c = bus.consumer("t")
    with bus.producer("t") as p:
        assert p.send_many(stamped(0, 500)) == 500
    cols = c.poll_columns(1000, timeout=5)
    assert len(cols) == 500
    np.testing.assert_array_equal(cols.rows(), stamped(0, 500))
    np.testing.assert_array_equal(cols.offset, np.arange(500))
    assert (cols.partition == 0).all() and (cols.value_length == 64).all()
    assert (cols.delivery_count == 1).all() and (cols.lost_before == 0).all()
    assert cols.timestamp.dtype == np.int64 and (np.diff(cols.timestamp) >= 0).all()
    assert bytes(cols.value(7)) == stamped(7, 1).tobytes()
    assert cols.values()[3] == stamped(3, 1).tobytes()
    at = int(cols.value_at[9])
    assert cols.buffer(0)[at:at + 64].tobytes() == stamped(9, 1).tobytes()
    with pytest.raises(ValueError):
        cols.offset[0] = 1  # the columns are read-only


def test_a_structured_array_comes_back_as_records(bus):
    bus.create_topic("t", capacity=2**20)
    c = bus.consumer("t")
    rec = np.zeros(40, dtype=[("id", "<u8"), ("price", "<f8"), ("side", "S1")])
    rec["id"] = np.arange(40)
    rec["price"] = np.linspace(1, 2, 40)
    rec["side"] = b"b"
    with bus.producer("t") as p:
        p.send_many(rec)
    back = c.poll_columns(timeout=5).rows(rec.dtype)
    assert back.shape == (40,)
    np.testing.assert_array_equal(back, rec)


def test_the_ring_wraps_many_times_without_a_wrong_row(bus):
    """A small ring: batches straddle its end, where rows() copies in two runs."""
    bus.create_topic("t", capacity=8 * 1024, max_message_size=100, max_messages=64)
    c = bus.consumer("t")
    seen = 0
    with bus.producer("t") as p:
        for first in range(0, 3000, 50):
            p.send_many(stamped(first, 50, size=72), timeout=5)
            while True:
                rows = c.poll_columns(37, timeout=0).rows().view("<u8")
                if not len(rows):
                    break
                np.testing.assert_array_equal(rows[:, 0], np.arange(seen, seen + len(rows)))
                np.testing.assert_array_equal(rows[:, -1], rows[:, 0])
                seen += len(rows)
    assert seen == 3000


def test_several_partitions(bus):
    bus.create_topic("t", partitions=3, capacity=2**16)
    c = bus.consumer("t")
    with bus.producer("t") as p:
        for part in range(3):
            p.send_many(stamped(part * 1000, 20), partition=part)
    got = {}
    while sum(map(len, got.values())) < 60:
        cols = c.poll_columns(7, timeout=5)
        assert len(cols)
        for part, row in zip(cols.partition.tolist(), cols.rows().view("<u8")[:, 0].tolist()):
            got.setdefault(part, []).append(row)
    assert got == {part: list(range(part * 1000, part * 1000 + 20)) for part in range(3)}


def test_values_of_different_lengths(bus):
    bus.create_topic("t", capacity=2**16)
    c = bus.consumer("t")
    with bus.producer("t") as p:
        p.send_many([b"a", b"bcd", b""])
    cols = c.poll_columns(timeout=5)
    assert cols.values() == [b"a", b"bcd", b""]
    assert cols.value_length.tolist() == [1, 3, 0]
    with pytest.raises(ValueError, match="one length"):
        cols.rows()


def test_nothing_there_gives_an_empty_batch(bus):
    bus.create_topic("t", capacity=2**16)
    c = bus.consumer("t")
    cols = c.poll_columns(10, timeout=0.05)
    assert len(cols) == 0 and cols.rows().shape == (0, 0) and cols.values() == []


def test_the_next_poll_releases_the_values(bus):
    bus.create_topic("t", capacity=2**16)
    c = bus.consumer("t")
    with bus.producer("t") as p:
        p.send_many(stamped(0, 4))
        cols = c.poll_columns(2, timeout=5)
        offsets = cols.offset
        assert c.poll(timeout=5).offset == 2
    with pytest.raises(shmbus.MessageReleasedError):
        cols.value(0)
    with pytest.raises(shmbus.MessageReleasedError):
        cols.rows()
    assert offsets.tolist() == [0, 1]  # the columns themselves stay


def test_messages_fetched_by_poll_come_first(bus):
    """poll() fetches ahead; poll_columns hands out what it fetched before reading more."""
    bus.create_topic("t", capacity=2**16)
    c = bus.consumer("t")
    with bus.producer("t") as p:
        p.send_many(stamped(0, 30))
    assert c.poll(timeout=5).offset == 0
    first = c.poll_columns(10, timeout=5)
    assert first.offset.tolist() == list(range(1, 11))
    np.testing.assert_array_equal(first.rows(), stamped(1, 10))
    rest = c.poll_columns(100, timeout=5)
    assert rest.offset.tolist() == list(range(11, 30))


def test_a_named_group_shares_and_commits(bus):
    bus.create_topic("t", capacity=2**16)
    with bus.producer("t") as p:
        p.send_many(stamped(0, 100))
    with bus.consumer("t", group="g", start="earliest") as c:
        assert len(c.poll_columns(60, timeout=5)) == 60
    with bus.consumer("t", group="g") as c:
        assert c.poll_columns(100, timeout=5).offset.tolist() == list(range(60, 100))


def test_bad_input(bus):
    bus.create_topic("t", capacity=2**16, max_message_size=64)
    with bus.consumer("t", group="m", ack="manual") as m:
        with pytest.raises(shmbus.ConfigError, match="ack='auto'"):
            m.poll_columns()
    c = bus.consumer("t")
    with pytest.raises(shmbus.ConfigError):
        c.poll_columns(0)
    with pytest.raises(TypeError):
        c.poll_columns(2.5)
    with pytest.raises(shmbus.ConfigError):
        c.poll_columns(10, timeout=-1)
    with bus.producer("t") as p:
        with pytest.raises(TypeError):
            p.send_many(np.int64(3).reshape(()))
        with pytest.raises(TypeError):
            p.send_many(np.array([object(), object()]))
        with pytest.raises(shmbus.MessageTooLargeError):
            p.send_many(np.zeros((3, 65), np.uint8))
        assert p.send_many(np.zeros((0, 8), np.uint8)) == 0
        p.send_many(stamped(0, 2))
    assert len(c.poll_columns(10, timeout=5)) == 2  # nothing of the refused sends got in


def _columns_consumer(bus_name, total, ready):
    with shmbus.Bus(bus_name) as bus, bus.consumer("t") as c:
        ready.set()
        seen = 0
        while seen < total:
            rows = c.poll_columns(4096, timeout=30).rows().view("<u8")
            if not len(rows):
                return f"nothing after {seen}"
            if not ((rows[:, 0] == np.arange(seen, seen + len(rows))).all()
                    and (rows[:, -1] == rows[:, 0]).all()):
                return f"wrong rows after {seen}"
            seen += len(rows)
        return seen


@pytest.mark.timeout(90)
def test_across_processes(bus, spawn):
    bus.create_topic("t", capacity=2**18, max_message_size=64)
    total = 200_000
    ready = spawn.Event()
    results = spawn.Queue()
    child = spawn.Process(target=_report, args=(results, _columns_consumer, (bus.name, total, ready)))
    child.start()
    try:
        assert ready.wait(30)
        with bus.producer("t") as p:
            for first in range(0, total, 1000):
                assert p.send_many(stamped(first, 1000), timeout=30) == 1000
        assert results.get(timeout=60) == total
        child.join(30)
        assert child.exitcode == 0
    finally:
        if child.is_alive():
            child.kill()
            child.join(10)


def _report(results, fn, args):
    results.put(fn(*args))
