"""What the suite measures: the workloads, the stamp every message carries, and the
loops that child processes run (the same loops for every peer).

A stamp is a little-endian uint64, ``producer index << 48 | sequence number``, in the
first and the last 8 bytes of each message; receivers check both.
"""
import queue
import struct
import time
from dataclasses import dataclass, replace
from typing import Any, Dict, List

KiB, MiB = 1024, 1024 * 1024
U64 = struct.Struct("<Q")
PRODUCER_SHIFT = 48
SEQ_MASK = (1 << PRODUCER_SHIFT) - 1
M64 = (1 << 64) - 1
# what a receive may raise instead of returning None when nothing came in time
TIMEOUTS = (queue.Empty, TimeoutError)


@dataclass(frozen=True)
class Workload:
    name: str                 # e.g. "1to1", "numpy", "fanout", "group", "4to1", "batch", "columnar", "ping"
    kind: str                 # bytes | numpy | batch | columnar | ping
    size: int                 # bytes per message
    count: int                # messages per producer
    producers: int = 1
    consumers: int = 1
    pattern: str = "share"    # each: every consumer gets every message | share: one consumer each
    batch: int = 0            # messages per send_many / recv_many
    spin: bool = False        # ping: the receiver busy-waits
    timeout: float = 30.0     # seconds a send or a connection may wait; receivers are
                              # made with RECV_TIMEOUT instead (see harness.py)

    @property
    def depth(self) -> int:
        """Queue depth in messages: min(1024 messages, 64 MiB), at least 2; for
        the batch kinds at least four batches (within 64 MiB), so that a batch
        does not wait for room three times over."""
        messages = max(1024, 4 * self.batch)
        return max(2, min(messages, 64 * MiB // self.size))

    @property
    def expected(self) -> int:
        """Deliveries the consumers must report between them."""
        sent = self.count * self.producers
        return sent * self.consumers if self.pattern == "each" else sent

    def with_count(self, count: int) -> "Workload":
        return replace(self, count=count)


def stamp(producer: int, seq: int) -> int:
    return producer << PRODUCER_SHIFT | seq


def payload_maker(size: int):
    """A function of a stamp that returns a fresh ``bytes`` of ``size`` bytes,
    stamped at both ends (one C call per message)."""
    pack = struct.Struct(f"<Q{size - 16}xQ").pack
    return lambda s: pack(s, s)


def stamps_of(size: int):
    """A function of a buffer that returns its (first, last) stamps."""
    unpack_from = struct.Struct(f"<Q{size - 16}xQ").unpack_from
    return unpack_from


class Tally:
    """What one receiver saw: deliveries, per-producer order, and the time of its
    first and last message (perf_counter, comparable across processes)."""

    def __init__(self, producers: int):
        self.next = [0] * producers     # next expected sequence number per producer
        self.got = 0
        self.bad = 0                    # torn or corrupt: first and last stamps differ
        self.out_of_order = 0
        self.seq_sum = 0                # sum of stamps: duplicates and losses show here
        self.t_first = None
        self.t_last = None

    def result(self) -> Dict[str, Any]:
        return {"got": self.got, "bad": self.bad, "out_of_order": self.out_of_order,
                "seq_sum": self.seq_sum, "t_first": self.t_first, "t_last": self.t_last}


def expected_sum(w: Workload) -> int:
    """The sum of the stamps the consumers must report between them, modulo 2**64
    (how the receivers keep it, so that numpy's wrapping sums agree)."""
    n = w.count
    per_copy = sum(n * stamp(p, 0) + n * (n - 1) // 2 for p in range(w.producers))
    return per_copy * (w.consumers if w.pattern == "each" else 1) & M64


def _target(w: Workload) -> int:
    """Messages one receiver must get, or -1 when consumers share the stream and
    none can know its part."""
    return w.count * w.producers if w.pattern == "each" or w.consumers == 1 else -1


class _Shared:
    """Competing consumers' running total (a ``multiprocessing.Value``): each adds
    what it got so far whenever its receive times out, and all stop once the total
    reaches what was sent."""

    def __init__(self, delivered: Any, expected: int):
        self.delivered, self.expected, self.flushed = delivered, expected, 0

    def done(self, got: int) -> bool:
        with self.delivered.get_lock():
            self.delivered.value += got - self.flushed
            self.flushed = got
            return self.delivered.value >= self.expected


# -- send loops (after the go signal) -----------------------------------------------

def send_loop(snd: Any, w: Workload, index: int) -> Dict[str, Any]:
    """Producer ``index`` sends its ``w.count`` messages; returns when it began and ended."""
    base = stamp(index, 0)
    t0 = time.perf_counter()
    if w.kind == "numpy":
        import numpy as np
        arr = np.zeros(w.size, np.uint8)
        u = arr.view("<u8")
        send = snd.send
        for s in range(base, base + w.count):
            u[0] = s
            u[-1] = s
            send(arr)
    elif w.kind == "batch":
        make, send_many = payload_maker(w.size), snd.send_many
        for start in range(base, base + w.count, w.batch):
            send_many([make(s) for s in range(start, min(start + w.batch, base + w.count))])
    elif w.kind == "columnar":
        import numpy as np
        a = np.zeros((w.batch, w.size), np.uint8)
        u = a.view("<u8")
        steps = np.arange(w.batch, dtype=np.uint64)
        send_rows = snd.send_rows
        for start in range(0, w.count, w.batch):
            n = min(w.batch, w.count - start)
            s = steps[:n] + np.uint64(base + start)
            u[:n, 0] = s
            u[:n, -1] = s
            send_rows(a[:n])
    else:
        make, send = payload_maker(w.size), snd.send
        for s in range(base, base + w.count):
            send(make(s))
    return {"t_start": t0, "t_end": time.perf_counter()}


# -- receive loops ------------------------------------------------------------------

def receive_loop(rcv: Any, w: Workload, stop: Any, delivered: Any = None) -> Dict[str, Any]:
    """Receive until this receiver has all it must get (or, for competing consumers,
    until all of them together have), or until ``stop`` is set; checks both stamps
    of every message and each producer's order.  Returns ``Tally.result()``."""
    if w.kind == "columnar":
        return _receive_rows(rcv, w, stop, delivered)
    t = Tally(w.producers)
    target = _target(w)
    shared = _Shared(delivered, w.expected) if target < 0 else None
    unpack, nxt, producers = stamps_of(w.size), t.next, w.producers
    recv = rcv.recv_many if w.kind == "batch" else rcv.recv
    many = w.kind == "batch"
    clock = time.perf_counter
    got = bad = ooo = total = 0
    t_last = None
    while got != target:
        try:
            got_now = recv(w.batch) if many else recv()
        except TIMEOUTS:
            got_now = None
        if got_now is None or (many and not got_now):
            if stop.is_set() or (shared is not None and shared.done(got)):
                break
            continue
        if t.t_first is None:
            t.t_first = clock()
        for buf in (got_now if many else (got_now,)):
            a, b = unpack(buf)
            p = a >> PRODUCER_SHIFT
            if a != b or p >= producers:
                bad += 1
            else:
                s = a & SEQ_MASK
                if s < nxt[p]:
                    ooo += 1
                else:
                    nxt[p] = s + 1
            total += a
            got += 1
        if shared is not None:
            t_last = clock()
    t.got, t.bad, t.out_of_order, t.seq_sum = got, bad, ooo, total & M64
    t.t_last = t_last if shared is not None else clock()
    return t.result()


def _receive_rows(rcv: Any, w: Workload, stop: Any, delivered: Any) -> Dict[str, Any]:
    """The columnar receive loop: one 2-D uint8 array per call, checked with numpy."""
    import numpy as np
    t = Tally(w.producers)
    target = _target(w)
    shared = _Shared(delivered, w.expected) if target < 0 else None
    recv_rows, clock = rcv.recv_rows, time.perf_counter
    while t.got != target:
        try:
            rows = recv_rows(w.batch)
        except TIMEOUTS:
            rows = None
        if rows is None or len(rows) == 0:
            if stop.is_set() or (shared is not None and shared.done(t.got)):
                break
            continue
        if t.t_first is None:
            t.t_first = clock()
        u = np.ascontiguousarray(rows).view("<u8")
        first, last = u[:, 0], u[:, -1]
        producer = first >> np.uint64(PRODUCER_SHIFT)
        t.bad += int(np.count_nonzero((first != last) | (producer >= w.producers)))
        for p in range(w.producers):
            s = first[(producer == p) & (first == last)] & np.uint64(SEQ_MASK)
            if len(s):
                t.out_of_order += int(s[0] < t.next[p]) + int(np.count_nonzero(s[1:] <= s[:-1]))
                t.next[p] = max(t.next[p], int(s.max()) + 1)
        t.seq_sum = (t.seq_sum + int(first.sum(dtype=np.uint64))) & M64
        t.got += len(first)
        t.t_last = clock()
    return t.result()


# -- round trip ---------------------------------------------------------------------

def ping_loop(snd: Any, rcv: Any, w: Workload, stop: Any) -> Dict[str, Any]:
    """Send a message, wait for it to come back, ``w.count`` times; each round trip
    in ns (perf_counter_ns), the first tenth dropped as warm-up."""
    make, unpack = payload_maker(w.size), stamps_of(w.size)
    send, recv, clock = snd.send, rcv.recv, time.perf_counter_ns
    lat: List[int] = []
    bad = 0
    for i in range(w.count):
        t0 = clock()
        send(make(i))
        buf = _wait(recv, stop)
        t1 = clock()
        if buf is None:
            break
        if unpack(buf) != (i, i):
            bad += 1
        lat.append(t1 - t0)
    return {"got": len(lat), "bad": bad, "lat_ns": lat[len(lat) // 10:]}


def pong_loop(snd: Any, rcv: Any, w: Workload, stop: Any) -> Dict[str, Any]:
    """Send every message received straight back, ``w.count`` times."""
    send, recv = snd.send, rcv.recv
    n = 0
    for n in range(1, w.count + 1):
        buf = _wait(recv, stop)
        if buf is None:
            n -= 1
            break
        send(buf)
    return {"got": n}


def _wait(recv, stop):
    """The next message, or None once ``stop`` is set."""
    while True:
        try:
            buf = recv()
        except TIMEOUTS:
            buf = None
        if buf is not None or stop.is_set():
            return buf
