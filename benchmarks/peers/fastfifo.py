"""faster-fifo: a circular buffer in shared memory behind a process-shared mutex.

- Bounded as the README of faster-fifo shows: ``max_size_bytes`` sized for
  ``w.depth`` messages (each stored as an 8-byte length plus its pickle, which
  adds up to about 170 bytes for a numpy array) and ``maxsize = w.depth``
  messages.  At the largest sizes that is 64 MiB plus the per-message overhead.
- get with ``timeout=w.timeout``; ``Empty`` becomes ``None``.  put waits for room
  up to ``SEND_WAIT`` seconds (the library's default is 10 s; a full queue is
  ordinary backpressure, not a failure), then raises ``Full``.
- batch: ``put_many`` / ``get_many(max_messages_to_get=...)``, its batch API
  (one lock for many messages).
- fan-out ("each"): one queue per subscriber, the producer puts into each.
- share / many -> 1: one queue, any number of putters and getters.
- Every message is pickled (the library's default serializer): ``bytes`` and
  numpy arrays alike; the receiver gets a fresh object back.
- Spin (ping with a busy-waiting receiver): ``get(block=False)`` in a loop, the
  library's own non-blocking get, until a message or ``w.timeout``.
"""
import time
from functools import partial
from queue import Empty
from typing import Any, Optional

NAME = "faster-fifo"
DIST = "faster-fifo"

RATE_HINT = 150_000  # messages/s at 64 B, 1 -> 1, on the project's 2-core VM
SEND_WAIT = 60.0     # seconds a put waits for room before it raises queue.Full

_KINDS = ("bytes", "numpy", "batch", "ping")
# Bytes a message takes in the ring beyond its payload: the 8-byte length and the
# pickle around it (measured: 9 to 18 bytes for bytes, 148 to 163 for a numpy array).
_OVERHEAD = 8 + 256


def unsupported(w) -> Optional[str]:
    try:
        import faster_fifo  # noqa: F401
    except ImportError:
        return "not installed (pip install '.[bench]')"
    if w.kind not in _KINDS:
        return f"no {w.kind} API"
    return None


def _messages(w) -> int:
    # put_many needs room for a whole batch at once
    return max(w.depth, w.batch) if w.kind == "batch" else w.depth


def open(w) -> Any:
    from faster_fifo import Queue
    n = _messages(w)
    queues = w.consumers if (w.pattern == "each" and w.consumers > 1) else 1
    return {"queues": [Queue(max_size_bytes=n * (w.size + _OVERHEAD), maxsize=n)
                       for _ in range(queues)]}


def close(channel: Any) -> None:
    # The rings live in multiprocessing RawArrays (anonymous shared memory, already
    # unlinked); they go with the last process that maps them.  Mark them closed.
    for q in channel.get("queues", ()):
        try:
            q.close()
        except Exception:
            pass


class Sender:
    def __init__(self, queues, w):
        self._queues = queues
        if len(queues) == 1:
            self.send = partial(queues[0].put, block=True, timeout=SEND_WAIT)
            self.send_many = partial(queues[0].put_many, block=True, timeout=SEND_WAIT)

    def send(self, buf) -> None:  # fan-out: one put per subscriber's queue
        for q in self._queues:
            q.put(buf, True, SEND_WAIT)

    def send_many(self, bufs) -> None:
        for q in self._queues:
            q.put_many(bufs, True, SEND_WAIT)

    def close(self) -> None:
        pass  # nothing per process: the queue is the parent's to close


class Receiver:
    def __init__(self, q, w):
        self._get = q.get
        self._get_many = q.get_many
        self._timeout = w.timeout
        if w.spin:
            self.recv = self._recv_spin

    def recv(self):
        try:
            return self._get(True, self._timeout)
        except Empty:
            return None

    def _recv_spin(self):
        get = self._get
        deadline = time.monotonic() + self._timeout
        while True:
            try:
                return get(False)
            except Empty:
                if time.monotonic() > deadline:
                    return None

    def recv_many(self, max: int):
        try:
            return self._get_many(True, self._timeout, max)
        except Empty:
            return []

    def close(self) -> None:
        pass


def sender(channel: Any, w, index: int) -> Sender:
    return Sender(channel["queues"], w)


def receiver(channel: Any, w, index: int) -> Receiver:
    queues = channel["queues"]
    return Receiver(queues[index] if len(queues) > 1 else queues[0], w)
