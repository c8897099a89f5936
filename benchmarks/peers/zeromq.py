"""pyzmq over ``ipc://`` sockets in a fresh temporary directory.

Socket types:

- ping: PAIR (one per direction, the harness opens two channels);
- 1 -> 1, many -> 1 and "share": PUSH/PULL.  Each consumer binds a PULL socket,
  each producer's PUSH connects to every consumer and round-robins over them.
  ``sender()`` returns once the ZMTP handshake with every consumer is done (a
  socket monitor, at most ``CONNECT_WAIT`` seconds): a PUSH whose connection is not
  up yet queues up to its HWM for that consumer and stalls until the next
  reconnect attempt, which the driver saw as 100 to 200 ms stalls at the start
  and shares as uneven as 1024 / 8976;
- fan-out ("each" with several consumers): XPUB/SUB.  Each producer binds an XPUB
  with ``XPUB_NODROP`` (a full subscriber makes ``send`` wait instead of losing
  the message) and ``XPUB_VERBOSE`` (it hears every subscription, not only the
  first one for a topic).  PUB/SUB joining is slow: a message published before a
  subscriber's subscription has reached the publisher is dropped for that
  subscriber.  So ``sender()`` does not return before it has received one
  subscription from each of the ``w.consumers`` subscribers (the welcome
  handshake), waiting at most ``CONNECT_WAIT`` seconds.

Both waits require receivers to be created before or at the same time as senders
(never only after every sender has returned), which a ready/go harness does.
Ping cannot wait so: the pong process makes its sender before the ping process
(which binds that channel's receiver) exists.  Its PAIR connects without waiting,
with RECONNECT_IVL = 10 ms; a message sent before the connection is up waits in
the PAIR's queue (ZMQ_IMMEDIATE is off), and the first round trips are warm-up.

Setup waits (the connection, the subscriptions) are bounded by ``CONNECT_WAIT``
seconds, also the socket monitor's for the ZMTP handshake.  SNDTIMEO is
``SEND_WAIT``: a full HWM is ordinary backpressure, and ``w.timeout`` (how long a
receive waits before it returns None and the loop looks around) is far too short
for a send.

Configuration: SNDHWM = RCVHWM = ``w.depth`` (so up to twice that, plus the kernel
socket buffers, can be in flight); RCVTIMEO = ``w.timeout`` (``recv`` returns None
on ``zmq.Again``).  Senders
copy (``copy=True``, the default): the contract lets a caller reuse its buffer
after ``send`` returns, which rules out pyzmq's zero-copy send without waiting on
a tracker.  Receivers take a frame without copying (``copy=False``) from 64 KiB
up, where pyzmq recommends it, and ``bytes`` below.

The lost tail (PEERS.md; libzmq issue 4660, pyzmq issue 1934, both open): LINGER
is not enough.  ``close`` with a linger returns as soon as libzmq has written
everything into the kernel socket; if the receiver is at its RCVHWM at that
moment its engine stops reading, and when the sender's process exits, the hang-up
makes it drop what is still in the kernel buffer.  The driver saw 0.1 to 7 % of a
stream's tail lost that way at 64 B.  So every channel but ping has a second,
tiny PULL socket per producer (``ack-p<i>``): a receiver's ``close`` sends one
"bye" to every producer, and a sender's ``close`` keeps its data socket open
until it has a bye from each consumer (at most ``CLOSE_WAIT`` seconds), then
closes with LINGER = ``CLOSE_WAIT`` and terminates its own context.  This is the
end-of-stream acknowledgement the zmq guide uses for pipelines (the "sink"
signal).  Ping needs none: the last reply is read before anyone closes.

batch: unsupported.  zmq has no batch API: ``send_multipart`` sends one message
made of parts (all or nothing, received as one message whatever ``max`` the
receiver asks for), and pyzmq sends it part by part from Python, so it would
measure the per-message calls of the bytes workload under another name.

Spin (ping with a busy-waiting receiver): ``recv(zmq.NOBLOCK)`` in a loop, the
library's own non-blocking receive, until a message or ``w.timeout``.
"""
import os
import shutil
import tempfile
import time
from typing import Any, Optional

NAME = "pyzmq"
DIST = "pyzmq"
RATE_HINT = 700_000  # messages/s at 64 B, 1 -> 1, on the project's 2-core VM
CONNECT_WAIT = 30.0  # seconds a sender waits for its consumers to be connected
SEND_WAIT = 60.0     # SNDTIMEO: seconds a send waits for room before it raises
CLOSE_WAIT = 30.0    # seconds a sender's close waits for its consumers' byes

_KINDS = ("bytes", "numpy", "ping")
_ZERO_COPY_FROM = 64 * 1024  # receive without a copy from this size up


def unsupported(w) -> Optional[str]:
    try:
        import zmq  # noqa: F401
    except ImportError:
        return "not installed (pip install '.[bench]')"
    if w.kind == "batch":
        return ("no batch API (send_multipart is one multi-part message, sent part "
                "by part from Python)")
    if w.kind not in _KINDS:
        return f"no {w.kind} API"
    return None


def _fanout(w) -> bool:
    return w.kind != "ping" and w.pattern == "each" and w.consumers > 1


def open(w) -> Any:
    return {"dir": tempfile.mkdtemp(prefix="shmbus-zmq-")}


def close(channel: Any) -> None:
    # ipc:// socket files stay behind after the sockets close: remove the directory.
    shutil.rmtree(channel.get("dir", ""), ignore_errors=True)


def _endpoint(channel, name: str) -> str:
    return "ipc://" + os.path.join(channel["dir"], name)


class _End:
    def __init__(self, w, kind):
        import zmq
        self._zmq = zmq
        self._w = w
        self._ctx = zmq.Context()
        self._sock = self._ctx.socket(kind)
        self._sock.setsockopt(zmq.SNDHWM, w.depth)
        self._sock.setsockopt(zmq.RCVHWM, w.depth)
        self._sock.setsockopt(zmq.SNDTIMEO, int(SEND_WAIT * 1000))
        self._sock.setsockopt(zmq.RCVTIMEO, max(1, int(w.timeout * 1000)))
        self._sock.setsockopt(zmq.RECONNECT_IVL, 10)  # the peer may bind later

    def _term(self, linger_ms: int) -> None:
        for sock in (self._sock, getattr(self, "_acks", None)):
            if sock is not None and not sock.closed:
                sock.close(linger=linger_ms)
        self._ctx.term()  # waits for queued messages, at most linger_ms


class Sender(_End):
    def __init__(self, channel, w, index: int):
        import zmq
        if w.kind == "ping":
            super().__init__(w, zmq.PAIR)
            self._sock.connect(_endpoint(channel, "pair"))  # no wait: see above
        elif _fanout(w):
            super().__init__(w, zmq.XPUB)
            self._bind_acks(channel, index)
            self._sock.setsockopt(zmq.XPUB_NODROP, 1)
            self._sock.setsockopt(zmq.XPUB_VERBOSE, 1)
            self._sock.bind(_endpoint(channel, f"p{index}"))
            self._welcome(w)
        else:
            super().__init__(w, zmq.PUSH)
            self._bind_acks(channel, index)
            self._connect_all([_endpoint(channel, f"c{c}") for c in range(w.consumers)], w)
        self.send = self._sock.send  # copy=True: the caller may reuse its buffer

    def _bind_acks(self, channel, index: int) -> None:
        self._acks = self._ctx.socket(self._zmq.PULL)
        self._acks.bind(_endpoint(channel, f"ack-p{index}"))

    def _connect_all(self, endpoints, w) -> None:
        # Ready means connected: a PUSH whose connection is not up yet queues up to
        # its HWM for that consumer and waits for the next reconnect attempt (a
        # stall of up to RECONNECT_IVL, and an uneven share).  So wait, at most
        # CONNECT_WAIT, for the ZMTP handshake with every consumer.
        from zmq.utils.monitor import recv_monitor_message
        zmq = self._zmq
        monitor = self._sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED)
        try:
            for endpoint in endpoints:
                self._sock.connect(endpoint)
            up = self._wait(monitor, len(endpoints), CONNECT_WAIT, recv_monitor_message)
        finally:
            self._sock.disable_monitor()
            monitor.close(linger=0)
        if up < len(endpoints):
            self._term(0)
            raise TimeoutError(f"connected to {up} of {len(endpoints)} consumers "
                               f"in {CONNECT_WAIT} s")

    def _wait(self, sock, n: int, seconds: float, recv=None) -> int:
        """Receive ``n`` messages (or subscriptions) from ``sock`` within ``seconds``."""
        deadline = time.monotonic() + seconds
        got = 0
        while got < n:
            left = deadline - time.monotonic()
            if left <= 0 or not sock.poll(int(left * 1000) + 1, self._zmq.POLLIN):
                break
            if recv is not None:
                recv(sock)
                got += 1
            elif sock.recv()[:1] != b"\x00":  # XPUB: \x01 subscribes, \x00 unsubscribes
                got += 1
        return got

    def _welcome(self, w) -> None:
        # Wait until every subscriber's subscription has arrived; from then on no
        # message can be dropped for lack of a subscriber.
        joined = self._wait(self._sock, w.consumers, CONNECT_WAIT)
        if joined < w.consumers:
            self._term(0)
            raise TimeoutError(f"{joined} of {w.consumers} subscribers joined "
                               f"in {CONNECT_WAIT} s")

    def close(self) -> None:
        if not self._sock.closed and getattr(self, "_acks", None) is not None:
            # End of stream: keep the connection up until every consumer has read
            # all it will read (see the module's docstring).
            self._wait(self._acks, self._w.consumers, CLOSE_WAIT)
        self._term(int(CLOSE_WAIT * 1000))


class Receiver(_End):
    def __init__(self, channel, w, index: int):
        import zmq
        self._channel = channel
        if w.kind == "ping":
            super().__init__(w, zmq.PAIR)
            self._sock.bind(_endpoint(channel, "pair"))
        elif _fanout(w):
            super().__init__(w, zmq.SUB)
            for p in range(w.producers):
                self._sock.connect(_endpoint(channel, f"p{p}"))
            self._sock.setsockopt(zmq.SUBSCRIBE, b"")
        else:
            super().__init__(w, zmq.PULL)
            self._sock.bind(_endpoint(channel, f"c{index}"))
        self._recv = self._sock.recv
        self._again = zmq.Again
        self._noblock = zmq.NOBLOCK
        self._timeout = w.timeout
        numpy = w.kind == "numpy"
        if numpy:
            import numpy as np
            self._frombuffer = np.frombuffer
            self._uint8 = np.uint8
        if w.spin:
            self.recv = self._recv_spin
        elif numpy:
            self.recv = self._recv_numpy
        elif w.size >= _ZERO_COPY_FROM:
            self.recv = self._recv_frame

    def recv(self):
        try:
            return self._recv()
        except self._again:
            return None

    def _recv_frame(self):
        try:
            return self._recv(copy=False).buffer
        except self._again:
            return None

    def _recv_numpy(self):
        try:
            return self._frombuffer(self._recv(copy=False).buffer, self._uint8)
        except self._again:
            return None

    def _recv_spin(self):
        recv, again, flags = self._recv, self._again, self._noblock
        deadline = time.monotonic() + self._timeout
        while True:
            try:
                return recv(flags)
            except again:
                if time.monotonic() > deadline:
                    return None

    def close(self) -> None:
        if self._sock.closed:
            return
        self._sock.close(linger=0)
        if self._w.kind != "ping":
            # One "bye" to each producer: it may now close its end (it would
            # otherwise wait CLOSE_WAIT seconds).
            for p in range(self._w.producers):
                bye = self._ctx.socket(self._zmq.PUSH)
                bye.connect(_endpoint(self._channel, f"ack-p{p}"))
                bye.send(b"bye")
                bye.close(linger=1000)
        self._ctx.term()


def sender(channel: Any, w, index: int) -> Sender:
    return Sender(channel, w, index)


def receiver(channel: Any, w, index: int) -> Receiver:
    return Receiver(channel, w, index)
