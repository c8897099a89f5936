"""Child-process helpers for test_cross_process.py.

Every function here runs in a child started with the *spawn* start method, so it
must be importable at module level.  A child is started through :func:`run`, which
calls the named worker with keyword arguments and puts ``(label, "ok", result)``
or ``(label, "error", traceback)`` on the results queue.  Workers bound every
wait by themselves (deadlines, poll timeouts, Event.wait timeouts) so that a
broken bus makes them report instead of hanging; the parent kills them anyway.
"""
import importlib
import os
import struct
import threading
import time
import traceback
from array import array

import shmbus
from _helpers import drain

# -- payloads: producer id + sequence number + a filler that shows tearing --------

_HEAD = struct.Struct("<IIH")


def payload(pid: int, seq: int, size: int = -1) -> bytes:
    """A message that names its producer and sequence number, followed by a
    filler whose every byte depends on both, so a torn or mixed-up message is
    seen.  ``size`` < 0: a length that varies with ``seq`` (0..60 filler bytes)."""
    n = seq % 61 if size < 0 else max(0, size - _HEAD.size)
    return _HEAD.pack(pid, seq, n) + bytes([(pid * 31 + seq) & 0xFF]) * n


def parse(value: bytes):
    """(pid, seq), or None if the message is not intact."""
    if len(value) < _HEAD.size:
        return None
    pid, seq, n = _HEAD.unpack_from(value)
    if len(value) != _HEAD.size + n:
        return None
    if value[_HEAD.size:] != bytes([(pid * 31 + seq) & 0xFF]) * n:
        return None
    return pid, seq


def run(results, label, fname, kwargs):
    """Entry point of every child: runs ``fname(**kwargs)`` and reports."""
    try:
        if ":" in fname:  # a worker of another module: "module:function"
            module, fname = fname.split(":")
            out = getattr(importlib.import_module(module), fname)(**kwargs)
        else:
            out = globals()[fname](**kwargs)
    except BaseException:
        results.put((label, "error", traceback.format_exc()))
    else:
        results.put((label, "ok", out))


class _Tally:
    """What a subscriber saw: ids in arrival order (pid << 32 | seq), torn
    messages, and whether offsets grew by one within each partition."""

    def __init__(self):
        self.ids = array("Q")
        self.torn = []
        self.offset_errors = []
        self.last = {}
        self.partitions = set()

    def add(self, m):
        v = m.value
        ps = parse(v)
        if ps is None:
            self.torn.append((m.partition, m.offset, v[:80]))
        else:
            self.ids.append(ps[0] << 32 | ps[1])
        p, off = m.partition, m.offset
        prev = self.last.get(p)
        if prev is not None and off <= prev:
            self.offset_errors.append((p, prev, off))
        self.last[p] = off
        self.partitions.add(p)

    def report(self, **extra):
        return dict(ids=self.ids.tobytes(), torn=self.torn[:10], n_torn=len(self.torn),
                    offset_errors=self.offset_errors[:10], partitions=sorted(self.partitions),
                    **extra)


# -- subscribers ---------------------------------------------------------------------


def subscriber(bus_name, topic, expected, ready, mode="poll", start="latest", deadline=40.0):
    """Attach, set ``ready``, then read until ``expected`` messages (or the
    deadline); then look briefly for extra ones (duplicates)."""
    bus = shmbus.Bus(bus_name)
    c = bus.consumer(topic, start=start)
    ready.set()
    t = _Tally()
    end = time.monotonic() + deadline
    watchdog = None
    try:
        if mode == "poll":
            while len(t.ids) + len(t.torn) < expected and time.monotonic() < end:
                m = c.poll(timeout=0.2)
                if m is not None:
                    t.add(m)
        elif mode == "batch":
            while len(t.ids) + len(t.torn) < expected and time.monotonic() < end:
                for m in c.poll_batch(max_messages=500, timeout=0.2):
                    t.add(m)
        elif mode == "iter":
            # the iteration ends by itself after `expected`; a watchdog thread
            # closes the consumer at the deadline so a shortfall cannot hang us
            watchdog = threading.Timer(deadline, c.close)
            watchdog.daemon = True
            watchdog.start()
            for m in c:
                t.add(m)
                if len(t.ids) + len(t.torn) >= expected:
                    break
        else:
            raise ValueError(mode)
        extra = [] if c.closed else c.poll_batch(max_messages=1000, timeout=0.3)
        for m in extra:
            t.add(m)
        return t.report(extra=len(extra), lag=None if c.closed else c.lag())
    finally:
        if watchdog is not None:
            watchdog.cancel()
        c.close()
        bus.close()


def drain_consumer(bus_name, topic, ready, done, go=None, deadline=30.0, per_message_sleep=0.0):
    """Attach and set ``ready``; wait for ``go`` (if given) before reading; read
    until ``done`` is set and the topic is then found empty."""
    bus = shmbus.Bus(bus_name)
    c = bus.consumer(topic, start="latest")
    ready.set()
    t = _Tally()
    try:
        if go is not None and not go.wait(deadline):
            return t.report(timed_out="go")
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            finished = done.is_set()  # read before the poll: every send happened before it
            m = c.poll(timeout=0.2)
            if m is None:
                if finished:
                    return t.report(timed_out=None)
                continue
            t.add(m)
            if per_message_sleep:
                time.sleep(per_message_sleep)
        return t.report(timed_out="deadline")
    finally:
        c.close()
        bus.close()


def idle_consumer(bus_name, topic, ready, stop, deadline=30.0):
    """Attach (its private group holds the ring), never read, and wait for
    ``stop``: a consumer that has stalled, or is about to be killed."""
    bus = shmbus.Bus(bus_name)
    c = bus.consumer(topic, start="latest")
    ready.set()
    stop.wait(deadline)
    c.close()
    bus.close()
    return os.getpid()


def blocked_poller(bus_name, topic, ready, mode, deadline=20.0):
    """Attach to an empty topic and block in poll(None) (or a loop of
    poll(1.0)) until one message arrives."""
    bus = shmbus.Bus(bus_name)
    c = bus.consumer(topic, start="latest")
    ready.set()
    try:
        t0 = time.monotonic()
        if mode == "none":
            m = c.poll(timeout=None)
        else:
            m = None
            while m is None and time.monotonic() - t0 < deadline:
                m = c.poll(timeout=1.0)
        return None if m is None else m.value
    finally:
        c.close()
        bus.close()


def fault_subscriber(bus_name, topic, ready, last_value, deadline=20.0, liveness=1.0):
    """Read with poll(timeout=None) until ``last_value`` arrives; report every
    value with its partition, offset and arrival time (CLOCK_MONOTONIC, which is
    system-wide on Linux).  ``liveness``: this bus handle's liveness timeout,
    after which it recovers a dead producer's open claim."""
    bus = shmbus.Bus(bus_name, liveness_timeout=liveness)
    c = bus.consumer(topic, start="latest")
    ready.set()
    got = []
    try:
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            m = c.poll(timeout=None)
            if m is None:
                break
            got.append((m.value, m.partition, m.offset, time.monotonic()))
            if m.value == last_value:
                break
        return got
    finally:
        c.close()
        bus.close()


# -- producers -----------------------------------------------------------------------


def producer(bus_name, topic, pid, count, go, method="send", key=None, batch=50,
             size=-1, timeout=30.0):
    """Send ``count`` payloads of producer ``pid`` once ``go`` is set.
    ``method``: send | send_headers | send_many.  Reports what send returned."""
    bus = shmbus.Bus(bus_name)
    p = bus.producer(topic, timeout=timeout)
    try:
        if not go.wait(30.0):
            raise RuntimeError("go was never set")
        offsets = []
        none = 0
        if method == "send_many":
            accepted = 0
            for first in range(0, count, batch):
                vals = [payload(pid, s, size) for s in range(first, min(count, first + batch))]
                accepted += p.send_many(vals, key=key)
            return dict(accepted=accepted, none=count - accepted, offsets=None)
        for seq in range(count):
            if method == "send_headers":
                off = p.send(payload(pid, seq, size), key=key, headers={"pid": str(pid), "b": b"\x00\xff"})
            else:
                off = p.send(payload(pid, seq, size), key=key)
            if off is None:
                none += 1
            else:
                offsets.append(tuple(off))
        all_offsets = all(isinstance(o, tuple) and len(o) == 2 for o in offsets)
        return dict(accepted=len(offsets), none=none, all_offsets=all_offsets,
                    offsets=offsets if count <= 2000 else None)
    finally:
        p.close()
        bus.close()


def drop_newest_producer(bus_name, topic, first_phase, second_phase, batch, phase1_done, phase2_go):
    """drop_newest accounting: phase 1 (consumer stopped) with send, phase 2
    (consumer running) with send and send_many; report accepted seqs."""
    bus = shmbus.Bus(bus_name)
    p = bus.producer(topic)
    try:
        accepted, refused, kinds = [], 0, set()
        seq = 0

        def send_each(count):
            nonlocal refused, seq
            for _ in range(count):
                off = p.send(payload(0, seq, 56))
                kinds.add(type(off).__name__)
                if off is None:
                    refused += 1
                else:
                    accepted.append(seq)
                seq += 1

        send_each(first_phase)
        phase1 = dict(accepted=len(accepted), refused=refused)
        phase1_done.set()
        if not phase2_go.wait(30.0):
            raise RuntimeError("phase2_go was never set")
        send_each(second_phase)
        # send_many under drop_newest: a batch is accepted up to the room there is
        for _ in range(4):
            vals = [payload(0, seq + i, 56) for i in range(batch)]
            n = p.send_many(vals)
            accepted.extend(range(seq, seq + n))
            refused += batch - n
            seq += batch
        return dict(phase1=phase1, attempted=seq, accepted=accepted, refused=refused,
                    kinds=sorted(kinds))
    finally:
        p.close()
        bus.close()


def error_producer(bus_name, topic, extra_attempts, limit=100000):
    """on_full="error": send until BusFull; time that send; then a few more
    attempts, each of which must raise at once as well."""
    bus = shmbus.Bus(bus_name)
    p = bus.producer(topic)
    try:
        accepted = 0
        first_err = None
        for seq in range(limit):
            t0 = time.monotonic()
            try:
                off = p.send(payload(0, seq, 56))
            except shmbus.BusFull:
                first_err = time.monotonic() - t0
                break
            if off is None:
                raise AssertionError("send returned None under on_full='error'")
            accepted += 1
        later = []
        for i in range(extra_attempts):
            t0 = time.monotonic()
            try:
                p.send(payload(0, 10**6 + i, 56))
                later.append(("sent", time.monotonic() - t0))
            except shmbus.BusFull:
                later.append(("BusFull", time.monotonic() - t0))
        return dict(accepted=accepted, first_err=first_err, later=later)
    finally:
        p.close()
        bus.close()


def timeout_producer(bus_name, topic, producer_timeout, send_timeout, limit=100000):
    """on_full="block" with a timeout: send until BusFull and time the send that
    raised; then once more with a per-send timeout override."""
    bus = shmbus.Bus(bus_name)
    p = bus.producer(topic, timeout=producer_timeout)
    try:
        accepted = 0
        waited = None
        for seq in range(limit):
            t0 = time.monotonic()
            try:
                p.send(payload(0, seq, 56))
            except shmbus.BusFull:
                waited = time.monotonic() - t0
                break
            accepted += 1
        t0 = time.monotonic()
        try:
            p.send(payload(0, 10**6, 56), timeout=send_timeout)
            override = ("sent", time.monotonic() - t0)
        except shmbus.BusFull:
            override = ("BusFull", time.monotonic() - t0)
        return dict(accepted=accepted, waited=waited, override=override)
    finally:
        p.close()
        bus.close()


def progress_producer(bus_name, topic, count, sent, timeout=30.0):
    """Blocking sends; ``sent`` (a shared counter) tracks how many returned."""
    bus = shmbus.Bus(bus_name)
    p = bus.producer(topic, on_full="block", timeout=timeout)
    try:
        n_offsets = 0
        for seq in range(count):
            off = p.send(payload(0, seq, 56))
            if off is not None:
                n_offsets += 1
            with sent.get_lock():
                sent.value = seq + 1
        return dict(offsets=n_offsets)
    finally:
        p.close()
        bus.close()


def key_partitions(bus_name, topic, keys):
    """Send one message per key, as str and as its UTF-8 bytes; report where each
    landed, and this interpreter's (salted) hash() of a str for comparison."""
    bus = shmbus.Bus(bus_name)
    p = bus.producer(topic)
    try:
        as_str = [p.send(b"s", key=k).partition for k in keys]
        as_bytes = [p.send(b"b", key=k.encode("utf-8")).partition for k in keys]
        again = [p.send(b"a", key=k).partition for k in keys]
        many = []
        for k in keys[:8]:  # send_many routes by the key as well
            before = [s["published"] for s in bus.stats(topic)["partitions"]]
            p.send_many([b"x", b"y"], key=k)
            after = [s["published"] for s in bus.stats(topic)["partitions"]]
            many.append([i for i, (a, b) in enumerate(zip(before, after)) if a != b])
        return dict(str=as_str, bytes=as_bytes, again=again, many=many,
                    hash=hash("shmbus-salt-probe"), hashseed=os.environ.get("PYTHONHASHSEED"))
    finally:
        p.close()
        bus.close()


def faulty_producer(bus_name, topic, fault, value, batch=0):
    """Arm SHMBUS_FAULT, open a producer and send (``batch`` > 0: send_many of
    that many copies): with ``kill`` the process dies at the fault point; with
    ``stop`` it stops there until continued, then reports."""
    os.environ["SHMBUS_FAULT"] = fault
    bus = shmbus.Bus(bus_name)
    p = bus.producer(topic)
    if batch:
        return dict(survived=True, accepted=p.send_many([value] * batch))
    off = p.send(value)
    return dict(survived=True, offset=tuple(off) if off is not None else None)


def stream_producer(bus_name, topic, stop, ready, limit=200000, deadline=20.0):
    """Send a steady stream until ``stop`` is set (bounded in count and time)."""
    bus = shmbus.Bus(bus_name)
    p = bus.producer(topic, timeout=1.0)
    try:
        ready.set()
        end = time.monotonic() + deadline
        n = 0
        while n < limit and not stop.is_set() and time.monotonic() < end:
            try:
                p.send(payload(7, n, 24))
            except shmbus.BusFull:
                continue  # the reader is gone: keep checking stop
            n += 1
            if n % 64 == 0:
                time.sleep(0.0005)
        return n
    finally:
        p.close()
        bus.close()


def consume_then_leave(bus_name, topic, ready, expected, consumed, leave, deadline=20.0):
    """Attach, read ``expected`` messages and commit them (one more poll), set
    ``consumed``, wait for ``leave``, then close: a subscriber that is done."""
    bus = shmbus.Bus(bus_name)
    c = bus.consumer(topic, start="latest")
    ready.set()
    try:
        got = drain(c, expected, deadline, field=lambda m: m.offset)
        extra = c.poll(timeout=0.1)  # commits what was handed out
        consumed.set()
        leave.wait(deadline)
        return dict(offsets=got, extra=extra is not None, lag=c.lag())
    finally:
        c.close()
        bus.close()


def send_numbers_on(bus, topic, n):
    """Given a Bus object (pickled by name), send b"0" .. b"n-1"."""
    with bus, bus.producer(topic) as p:
        for i in range(n):
            p.send(b"%d" % i)


def lossy_reader(bus_name, topic, count, ready, pause=0.0, tethered=False, deadline=40.0):
    """A subscriber a producer may lap (untethered, or on a drop_oldest topic):
    reads (``view()`` and ``value``) until it has accounted for ``count``
    messages, delivered or lost; checks each one is intact and that sequence
    numbers only grow.  A message overwritten between poll and read raises
    MessageReleasedError: never returned, so counted as lost."""
    with shmbus.Bus(bus_name) as bus, bus.consumer(topic, tethered=tethered, start="earliest") as c:
        ready.set()
        delivered = lost = torn = backwards = 0
        last = -1
        end = time.monotonic() + deadline
        while delivered + lost < count and time.monotonic() < end:
            msgs = c.poll_batch(200, timeout=0.1)
            for m in msgs:
                lost += m.lost_before
                try:
                    got = parse(bytes(m.view())), parse(m.value)
                except shmbus.MessageReleasedError:
                    lost += 1  # overwritten while it was read: never returned
                    continue
                if got[0] is None or got[0] != got[1]:
                    torn += 1
                    continue
                backwards += got[0][1] <= last
                last = got[0][1]
                delivered += 1
            if pause and msgs:
                time.sleep(pause)
        c.poll(timeout=0)  # commits what the last poll handed out
        return dict(delivered=delivered, lost=lost, torn=torn, backwards=backwards,
                    lag=c.lag())
