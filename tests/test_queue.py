"""shmbus.Queue behaves as multiprocessing.Queue (checked the way the standard
library's tests check it), moves items between many processes without loss or
duplicates, survives a putter killed mid-put, and leaves nothing in /dev/shm."""
import multiprocessing
import os
import pickle
import queue
import signal
import time

import numpy as np
import pytest

import _queue_workers as w
import shmbus

pytestmark = pytest.mark.timeout(90)


def queue_segments():
    return [n for n in os.listdir("/dev/shm") if n.startswith("shmbus:queue-")]


@pytest.fixture(autouse=True)
def nothing_left():
    before = set(queue_segments())
    yield
    deadline = time.monotonic() + 5
    while set(queue_segments()) - before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert set(queue_segments()) - before == set()


@pytest.fixture
def q():
    q = shmbus.Queue(maxsize=3)
    yield q
    q.close()


def test_fifo_sizes_full_and_empty(q):
    assert q.empty() and not q.full() and q.qsize() == 0
    for i in range(3):
        q.put(i)
    assert q.full() and q.qsize() == 3 and not q.empty()
    with pytest.raises(queue.Full):
        q.put_nowait(3)
    with pytest.raises(queue.Full):
        q.put(3, False)
    assert [q.get(), q.get_nowait(), q.get(True, 1)] == [0, 1, 2]
    with pytest.raises(queue.Empty):
        q.get_nowait()
    with pytest.raises(queue.Empty):
        q.get(False)
    q.put(4)
    assert q.qsize() == 1 and q.get() == 4


def test_timeouts_as_multiprocessing_has_them(q):
    for i in range(3):
        q.put(i)
    t = time.monotonic()
    with pytest.raises(queue.Full):
        q.put(3, timeout=0.3)
    with pytest.raises(queue.Full):
        q.put(3, block=True, timeout=0)
    assert 0.25 <= time.monotonic() - t < 2
    with pytest.raises(ValueError):
        q.put(3, timeout=-1)
    for _ in range(3):
        q.get()
    t = time.monotonic()
    with pytest.raises(queue.Empty):
        q.get(timeout=0.3)
    assert 0.25 <= time.monotonic() - t < 2
    with pytest.raises(ValueError):
        q.get(timeout=-1)
    with pytest.raises(queue.Empty):
        q.get_many(timeout=0.1)


def test_close_join_thread_and_cancel_join_thread(q):
    with pytest.raises(AssertionError):
        q.join_thread()                 # multiprocessing: only after close()
    q.cancel_join_thread()
    q.put("x")
    q.close()
    q.close()
    with pytest.raises(ValueError):
        q.put("y")
    with pytest.raises(ValueError):
        q.get()
    q.join_thread()


def test_objects_round_trip_and_numpy_arrays_come_back_writable():
    q = shmbus.Queue()
    try:
        items = [None, 1, "s", b"b", {"k": [1, 2.5]}, (1, (2,)), np.arange(100_000, dtype=np.int64),
                 np.zeros((3, 4), np.float32)]
        for x in items:
            q.put(x)
        got = [q.get(timeout=1) for _ in items]
        assert got[:6] == items[:6]
        assert np.array_equal(got[6], items[6]) and got[7].shape == (3, 4)
        assert got[6].flags.writeable
        got[6][0] = 7                  # the getter's own copy
        q.put_many(range(10))
        assert q.get_many(timeout=1, max_messages_to_get=4) == [0, 1, 2, 3]
        assert q.get_many(timeout=1) == list(range(4, 10))
        # a batch copies what fits in its buffer; a larger item and those after it
        # are taken and copied the long way, in order
        big = np.arange(300_000, dtype=np.int64)  # 2.4 MB
        for x in ("a", big, "b", b"c" * 5000):
            q.put(x)
        got = q.get_many(timeout=1)
        assert got[0] == "a" and np.array_equal(got[1], big) and got[2:] == ["b", b"c" * 5000]
        assert q.qsize() == 0
    finally:
        q.close()


def test_unpicklable_and_too_large_items_leave_the_queue_unchanged(q):
    q.put("before")
    with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
        q.put(lambda: 1)
    big = shmbus.Queue(max_size_bytes=4096)
    try:
        with pytest.raises(ValueError):
            big.put(b"x" * 10_000)     # larger than the queue: at once, never after waiting
        assert big.qsize() == 0
    finally:
        big.close()
    assert q.qsize() == 1 and q.get() == "before"


@pytest.mark.parametrize("bad", [dict(maxsize="3"), dict(max_size_bytes=10), dict(max_size_bytes=1.5)])
def test_bad_arguments(bad):
    with pytest.raises((TypeError, ValueError)):
        shmbus.Queue(**bad)


@pytest.mark.parametrize("method", ["spawn", "fork"])
def test_passed_to_a_child(method):
    ctx = multiprocessing.get_context(method)
    q = shmbus.Queue()
    try:
        p = ctx.Process(target=w.put_pid, args=(q,))
        p.start()
        msg, pid = q.get(timeout=20)
        p.join(20)
        assert (msg, pid, p.exitcode) == ("hello from", p.pid, 0)
    finally:
        q.close()


def test_four_putters_four_getters_a_hundred_thousand_items():
    ctx = multiprocessing.get_context("spawn")
    q = shmbus.Queue(maxsize=1000)
    out, done = ctx.Queue(), ctx.Value("q", 0)
    total = 100_000
    try:
        getters = [ctx.Process(target=w.getter, args=(q, out, total, done)) for _ in range(4)]
        putters = [ctx.Process(target=w.putter, args=(q, k * 25_000, 25_000)) for k in range(4)]
        for p in getters + putters:
            p.start()
        got = [out.get(timeout=80) for _ in getters]
        for p in getters + putters:
            p.join(20)
            assert p.exitcode == 0
        items = [x for g in got for x in g]
        assert len(items) == total and sorted(items) == list(range(total))
        for g in got:  # each getter sees each putter's items in order
            for k in range(4):
                mine = [x for x in g if k * 25_000 <= x < (k + 1) * 25_000]
                assert mine == sorted(mine)
    finally:
        q.close()


def test_a_putter_killed_mid_put_does_not_stop_the_others():
    ctx = multiprocessing.get_context("spawn")
    q = shmbus.Queue(max_size_bytes=4 * 2**20)
    ready = ctx.Event()
    try:
        for _ in range(3):
            p = ctx.Process(target=w.put_forever, args=(q, ready))
            p.start()
            assert ready.wait(20)
            time.sleep(0.05 + 0.1 * _)
            os.kill(p.pid, signal.SIGKILL)
            p.join(10)
            ready.clear()
            while True:  # drain what it put; a torn put is skipped within the liveness timeout
                try:
                    q.get_many(timeout=2.5)
                except queue.Empty:
                    break
        q.put("still works", timeout=5)
        assert q.get(timeout=5) == "still works"
    finally:
        q.close()


def test_a_queue_every_user_of_which_crashed_is_removed_by_the_next_one():
    ctx = multiprocessing.get_context("spawn")
    names = ctx.Queue()
    p = ctx.Process(target=w.make_queue_and_hang, args=(names,))
    p.start()
    name = names.get(timeout=30)
    assert any(name in n for n in queue_segments())
    os.kill(p.pid, signal.SIGKILL)
    p.join(10)
    assert any(name in n for n in queue_segments())  # left by the crash
    shmbus.Queue().close()                           # a new queue sweeps it
    assert not any(name in n for n in queue_segments())
