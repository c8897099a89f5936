"""multiprocessing.Pipe(duplex=False) with send_bytes / recv_bytes.

A pipe is point to point: one reader, one writer.  The channel is one pipe per
(producer, consumer) pair:

- 1 -> 1 and ping: one pipe;
- fan-out ("each"): producer p writes every message to each of its pipes, one per
  subscriber;
- many -> 1: consumer 0 reads the pipes of every producer, taking whichever is
  ready (``multiprocessing.connection.wait`` semantics, one ``poll`` call);
- "share" with several consumers: unsupported, there is no way to hand one stream
  to several readers (the adapter would have to do the distributing itself).

Depth: the kernel pipe buffer (64 KiB by default); multiprocessing.Pipe does not
let a user set it, so a pipe cannot hold ``w.depth`` messages of most sizes.

Timeouts.  ``recv_bytes`` blocks with no timeout, and the contract wants ``None``
after ``w.timeout`` seconds.  ``Connection.poll(timeout)`` does that but costs a
selector object built, registered and closed per call (several microseconds of
Python, comparable to a whole 64 B message).  Instead each receiver keeps one
``select.poll`` object registered on its pipes' descriptors and makes one
``poll`` system call before each read: the same readiness check that
``Connection.poll`` makes, without the per-call set-up.  That call is the price
of a bounded wait and is counted in this peer's figures (about a third of a
microsecond on this machine).

A send has no timeout: ``send_bytes`` blocks while the pipe is full, as long as
its reader does not read (the harness's deadline ends a run that hangs).

numpy: ``send_bytes`` takes the array (buffer protocol, no copy on our side);
the receiver wraps the ``bytes`` it gets with ``numpy.frombuffer`` (uint8).

Spin (ping with a busy-waiting receiver): the receiver calls ``poll`` with a zero
timeout in a loop, the library's own non-blocking readiness check, until a
message or ``w.timeout``.
"""
import multiprocessing
import select
import time
from multiprocessing.connection import Connection
from typing import Any, List, Optional

NAME = "multiprocessing.Pipe"
DIST = None  # the standard library
RATE_HINT = 200_000  # messages/s at 64 B, 1 -> 1, on the project's 2-core VM

_KINDS = ("bytes", "numpy", "ping")


def unsupported(w) -> Optional[str]:
    if w.kind == "batch":
        return "no batch API (Connection sends one message per call)"
    if w.kind not in _KINDS:
        return f"no {w.kind} API"
    if w.pattern == "share" and w.consumers > 1:
        return ("a pipe has one reader and one writer: it cannot share one stream "
                "between several consumers")
    if w.kind == "numpy":
        try:
            import numpy  # noqa: F401
        except ImportError:
            return "numpy not installed (pip install '.[bench]')"
    return None


def open(w) -> Any:
    # pipes[p][c] = (reader, writer) between producer p and consumer c.  Connection
    # objects pickle to spawned children (their descriptors are passed along).
    return {"pipes": [[multiprocessing.Pipe(duplex=False) for _ in range(w.consumers)]
                      for _ in range(w.producers)]}


def close(channel: Any) -> None:
    for row in channel.get("pipes", ()):
        for reader, writer in row:
            for conn in (reader, writer):
                try:
                    conn.close()
                except OSError:
                    pass


class Sender:
    def __init__(self, writers: List[Connection]):
        self._writers = writers
        if len(writers) == 1:
            self.send = writers[0].send_bytes  # the library's own bound method

    def send(self, buf) -> None:  # fan-out: the same message down each pipe
        for conn in self._writers:
            conn.send_bytes(buf)

    def close(self) -> None:
        for conn in self._writers:
            conn.close()


class Receiver:
    def __init__(self, readers: List[Connection], w):
        self._readers = readers
        self._by_fd = {conn.fileno(): conn for conn in readers}
        self._poller = select.poll()
        for fd in self._by_fd:
            self._poller.register(fd, select.POLLIN)
        self._timeout_ms = max(1, int(w.timeout * 1000))
        self._timeout = w.timeout
        self._ready: List[Connection] = []  # many -> 1: pipes found ready, not yet read
        self._numpy = w.kind == "numpy"
        if self._numpy:
            import numpy
            self._frombuffer = numpy.frombuffer
            self._uint8 = numpy.uint8
        if w.spin:
            self.recv = self._recv_spin
        elif len(readers) == 1 and not self._numpy:
            self.recv = self._recv_one
        elif len(readers) == 1:
            self.recv = self._recv_one_numpy
        else:
            self.recv = self._recv_any

    def _recv_one(self):
        if self._poller.poll(self._timeout_ms):
            return self._readers[0].recv_bytes()
        return None

    def _recv_one_numpy(self):
        if self._poller.poll(self._timeout_ms):
            return self._frombuffer(self._readers[0].recv_bytes(), self._uint8)
        return None

    def _recv_any(self):
        if not self._ready:
            events = self._poller.poll(self._timeout_ms)
            if not events:
                return None
            self._ready = [self._by_fd[fd] for fd, _ in events]
        data = self._ready.pop().recv_bytes()
        return self._frombuffer(data, self._uint8) if self._numpy else data

    def _recv_spin(self):
        poll = self._poller.poll
        deadline = time.monotonic() + self._timeout
        while not self._ready:
            events = poll(0)
            if events:
                self._ready = [self._by_fd[fd] for fd, _ in events]
            elif time.monotonic() > deadline:
                return None
        data = self._ready.pop().recv_bytes()
        return self._frombuffer(data, self._uint8) if self._numpy else data

    def recv(self):  # replaced per instance in __init__
        raise NotImplementedError

    def close(self) -> None:
        for conn in self._readers:
            conn.close()


def sender(channel: Any, w, index: int) -> Sender:
    return Sender([writer for _, writer in channel["pipes"][index]])


def receiver(channel: Any, w, index: int) -> Receiver:
    return Receiver([row[index][0] for row in channel["pipes"]], w)
