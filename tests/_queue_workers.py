"""Children for the Queue tests (spawned or forked)."""
import os
import queue
import time


def putter(q, start, count):
    for i in range(start, start + count):
        q.put(i, timeout=30)


def getter(q, out, total, done):
    """Get until all getters together have ``total`` items; report them."""
    got = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and done.value < total:
        try:
            items = q.get_many(timeout=0.2, max_messages_to_get=100)
        except queue.Empty:
            continue
        got += items
        with done.get_lock():
            done.value += len(items)
    out.put(got)


def put_pid(q):
    q.put(("hello from", os.getpid()), timeout=10)


def put_forever(q, ready):
    ready.set()
    payload = b"x" * 200_000
    while True:
        q.put(payload, timeout=30)


def make_queue_and_hang(names):
    import shmbus
    q = shmbus.Queue()
    names.put(q._name)
    q.put("left behind")
    time.sleep(60)
