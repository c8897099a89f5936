"""Consumer: reads a topic as a member of a group."""
import array
import asyncio
import time
from typing import Any, AsyncIterator, Callable, Iterator, List, Optional, Tuple

import numpy as np

from ._columns import Columns
from ._config import ACK, MAX_DELAY, ORDERING, START, choice, seconds
from ._core import error
from ._dead_letter import REJECTED, DeadLetters
from ._fast import Core, message as _message
from ._errors import AckError, ClosedError, ConfigError, MessageReleasedError
from ._message import ACKED, Message
from ._native import ffi, lib
from ._handle import Handle
from ._producer import Producer
from ._topic import TopicMap

_FIELDS = lib.SHMBUS_DELIVERY_FIELDS
_PARTITION = lib.SHMBUS_D_PARTITION
_OFFSET = lib.SHMBUS_D_OFFSET
_FLAGS = lib.SHMBUS_D_FLAGS
_DEAD = lib.SHMBUS_DF_DEAD_LETTER
_poll_wait = lib.shmbus_poll_wait
_ack = lib.shmbus_ack
_INTERRUPTED = lib.SHMBUS_INTERRUPTED
_VLEN = lib.SHMBUS_D_VALUE_LEN
_KLEN = lib.SHMBUS_D_KEY_LEN
_take_copy = lib.shmbus_take_copy
_LONG_WAY = lib.SHMBUS_ETOOLARGE
_COPY_ROOM = 4096  # bytes a one-call get copies into; a bigger record goes the long way
_MANY_ROOM = 2**20  # the same for a batch
_WAIT_SLICE = 0.25  # seconds per C wait, so that Ctrl-C and close() are seen
_SLICE_NS = int(_WAIT_SLICE * 1e9)
SPIN = 50e-6  # seconds a waiting poll spins before it sleeps on the futex
MAX_BATCH = 65536
# Deliveries fetched per call into the core by poll(); handed out one per poll.
# They are committed together, at the fetch after the last one is handed out.
# With manual acks poll() fetches one at a time: a delivery's ack deadline starts
# when it is handed out, and a nack holds back what was not handed out yet.
PREFETCH = 64


class _Fields(array.array):
    """The delivery records of one fetch, as the core wrote them (one memcpy, no
    Python int per field until one is read), and the seek generations of the
    partitions when they were fetched.  Its messages keep it alive."""
    __slots__ = ("gens",)


def _fields_of(records: Any, gens: tuple) -> _Fields:
    f = _Fields("Q")
    f.frombytes(records.cast("B")) if isinstance(records, memoryview) else f.extend(records)
    f.gens = gens
    return f


def _check_batch(max_messages: Any, timeout: Any) -> None:
    if isinstance(max_messages, bool) or not isinstance(max_messages, int):
        raise TypeError("max_messages must be an int")
    if not 1 <= max_messages <= MAX_BATCH:
        raise ConfigError(f"max_messages must be between 1 and {MAX_BATCH}")
    if timeout and timeout < 0:
        raise ConfigError(f"timeout must be >= 0 or None, got {timeout}")


class Consumer(Handle):
    """Reads one topic.  Create with :meth:`Bus.consumer`.

    Without a group the consumer has a private group: it receives every message
    published from its start on, in order within each partition, and the group
    goes away when the consumer closes or its process dies.

    With ``group="name"`` it joins that group, created at ``start`` if new (an
    existing group goes on from where it is; ``start`` is for new groups only,
    and ``"committed"`` starts a new group at the end).  Members of one group
    share its messages; every group gets every message.  A named group outlives
    its members: its position stays in the bus.  Its ``ack``, ``ordering``,
    ``max_deliveries`` and ``tethered`` are fixed when it is created and a member
    asking for others gets :class:`ConfigMismatchError`; ``ack_timeout`` and
    ``dead_letter`` are each member's own.

    ``ordering="partition"`` gives each partition to one live member at a time
    (so per-key order holds; members beyond the number of partitions wait);
    ``"none"`` lets every member take the next message.

    ``ack="auto"``: a message is done when the next poll releases it, so
    ``Message.view()`` stays valid until then (at most once: if the member dies
    holding it, it is not delivered again).  ``ack="manual"``: a message stays
    pending until :meth:`ack`; ``nack``, an ``ack_timeout`` that passes, the
    member's death or ``close()`` deliver it again, with ``delivery_count``
    raised; after ``max_deliveries`` deliveries it goes to ``dead_letter``.  A
    group has at most 4096 pending messages per partition (fewer on a topic with
    fewer index slots): past that, its members wait for the oldest to be done.
    """

    # _flat, _i, _n and _held live in the C base (_fast.Core), where poll() reads them
    __slots__ = ("group", "_busy", "_closing", "_maps", "_views", "_out", "_fields", "_spin", "_manual", "_pairs", "_dead", "_unread", "_spills",
                 "_drainer", "_ordering", "_gens", "_columns", "_copy", "_copy_out", "_copy_fields",
                 "_copied_n", "_many")

    def __init__(self, topic: TopicMap, group: Optional[str], ack: str, ordering: str, start: str,
                 ack_timeout: float, max_deliveries: Optional[int], dead_letter: Optional[str],
                 tethered: bool, spin: float, open_producer: Callable[[str], Any]):
        choice(ack, ACK, "ack")
        choice(ordering, ORDERING, "ordering")
        choice(start, START, "start")
        timeout = seconds(ack_timeout, "ack_timeout", allow_none=False)
        if timeout > MAX_DELAY:
            raise ConfigError(f"ack_timeout must be at most {MAX_DELAY:.0f} seconds")
        self._spin = int(seconds(spin, "spin", allow_none=False) * 1e9)
        if max_deliveries is not None and (isinstance(max_deliveries, bool) or not isinstance(max_deliveries, int)):
            raise TypeError("max_deliveries must be an int or None")
        if max_deliveries is not None and not 1 <= max_deliveries <= lib.SHMBUS_MAX_DELIVERIES:
            raise ConfigError(f"max_deliveries must be between 1 and {lib.SHMBUS_MAX_DELIVERIES}")
        if not isinstance(tethered, bool):
            raise TypeError("tethered must be a bool")
        if ack == "auto" and (max_deliveries is not None or dead_letter is not None):
            raise ConfigError("max_deliveries and dead_letter need ack='manual'")
        if dead_letter == topic.name:
            raise ConfigError("a topic cannot be its own dead_letter topic")
        self.group = group
        self._busy = False
        self._closing = False
        self._unread: Any = None
        self._columns: Optional[Columns] = None
        self._manual = ack == "manual"
        self._ordering = ordering
        # seeks per partition: a fetch's deliveries carry the tuple current then
        # (as the last item of its list), and an ack of what a seek abandoned does nothing
        self._gens = (0,) * topic.partitions
        self._maps = topic.maps
        self._views = topic.views
        self._dead = DeadLetters(dead_letter, group, open_producer)
        self._spills = topic.info["on_full"] == lib.SHMBUS_ON_FULL_SPILL
        self._drainer: Optional[Producer] = None
        self._copy: Any = None  # _take_copied's buffer and delivery fields, made on first use
        self._copy_out: Any = None
        self._copy_fields: Any = None
        self._copied_n = ffi.new("uint32_t *")
        self._many: Any = None  # _take_copied_many's buffer, made on first use
        options = ffi.new("struct shmbus_group_options *")
        name = ffi.new("char[]", group.encode()) if group else ffi.NULL
        options.name = name
        options.name_len = len(group) if group else 0
        options.flags = lib.SHMBUS_GROUP_TETHERED if tethered else 0
        options.start = START[start]
        options.ack = ACK[ack]
        options.ordering = ORDERING[ordering]
        options.max_deliveries = max_deliveries or 0
        options.ack_timeout_ns = int(timeout * 1e9)
        self._attach(topic, lambda t, fd, pid, st, err: lib.shmbus_consumer_open(
            t, fd, pid, st, options, err), "consumer")
        self._out = ffi.new("uint64_t[]", PREFETCH * _FIELDS)
        self._fields = memoryview(ffi.buffer(self._out)).cast("Q")
        self._pairs = ffi.new("uint64_t[]", 2 * PREFETCH)
        # deliveries fetched from the core: handed out from _i on; those from
        # _held on are still held by the caller (their views are valid)
        self._flat = ()
        self._i = self._n = self._held = 0
        self._set_bases([int(ffi.cast("uintptr_t", ffi.from_buffer(m))) for m in self._maps])

    # -- reading -------------------------------------------------------------------

    poll = Core._poll_fast  # a fetched delivery, in C; anything else: _poll_general

    def _poll_general(self, timeout: Optional[float] = None) -> Optional[Message]:
        """poll(timeout=None): the next message, or None when ``timeout`` seconds
        pass first.  ``timeout=0`` never waits; ``None`` waits until a message
        arrives or the consumer is closed (then None).  Releases the previously
        polled messages.  (Its shortest path is in C: ``_fast.c``.)"""
        if timeout and timeout < 0:
            raise ConfigError(f"timeout must be >= 0 or None, got {timeout}")
        i = self._i
        if i < self._n:
            self._held = i
            self._i = i + _FIELDS
            return _message(self, self._flat, i)
        if self._manual:
            m = self._take_one()
            if m is not None:
                return m
        if not self._fetch(1 if self._manual else PREFETCH, timeout):
            return None
        self._i = _FIELDS
        return _message(self, self._flat, 0)

    def poll_batch(self, max_messages: int = 1000, timeout: Optional[float] = 0.1) -> List[Message]:
        """Up to ``max_messages`` messages with one call into the core; waits up to
        ``timeout`` seconds for the first.  Maybe empty."""
        _check_batch(max_messages, timeout)
        i = self._i
        if i >= self._n:
            if not self._fetch(max_messages, timeout):
                return []
            i = 0
        end = min(self._n, i + max_messages * _FIELDS)
        self._held = i
        self._i = end
        flat = self._flat
        return [_message(self, flat, j) for j in range(i, end, _FIELDS)]

    def poll_columns(self, max_messages: int = 4096, timeout: Optional[float] = 0.1) -> Columns:
        """Up to ``max_messages`` messages as :class:`Columns` (numpy arrays, no
        Python object per message), with one call into the core; waits up to
        ``timeout`` seconds for the first.  Maybe empty.  For ``ack="auto"``
        consumers: the batch is committed by the next poll, which also releases
        its values."""
        if self._manual:
            raise ConfigError("poll_columns() is for ack='auto' consumers; "
                              "with manual acks use poll_batch() and ack the messages")
        _check_batch(max_messages, timeout)
        if self._i < self._n:  # fetched by poll() and not handed out yet: these first
            i, end = self._i, min(self._n, self._i + max_messages * _FIELDS)
            self._held, self._i = i, end
            rows = np.frombuffer(self._flat, np.uint64)[i:end].reshape(-1, _FIELDS)
        else:
            self._busy = True
            try:
                if self._closing:
                    self._closed_result()
                    return Columns(np.empty((0, _FIELDS), np.uint64), self)
                self._make_room(max_messages)
                deadline = None if not timeout else time.monotonic() + seconds(timeout, "timeout")
                rows = np.empty((max_messages, _FIELDS), np.uint64)
                out, self._out = self._out, ffi.from_buffer("uint64_t[]", rows)  # the core fills rows
                try:
                    rows = rows[:self._call_checked(max_messages, timeout, deadline)]
                finally:
                    self._out = out
            finally:
                self._busy = False
                if self._closing:
                    self._release()
        self._columns = Columns(rows, self)
        return self._columns

    def _take_one(self) -> Optional[Message]:
        """Manual acks: one delivery that is there now, by the shortest path; None
        sends poll() the long way (waiting, dead letters, errors, closing)."""
        self._busy = True
        try:
            if self._closing or _poll_wait(self._h, self._out, 1, 0, 0) != 1:
                return None
            if self._fields[_FLAGS] & _DEAD:
                self._pass_dead_letters(self._fields[:_FIELDS].tolist())
                return None
            flat = _fields_of(self._fields[:_FIELDS], self._gens)
        finally:
            self._busy = False
            if self._closing:
                self._release()
        self._flat = flat
        self._i = self._n = _FIELDS
        self._held = 0
        return _message(self, flat, 0)

    def _take_copied(self, timeout: Optional[float]) -> Optional[Tuple[bytes, int]]:
        """Manual acks, a queue's get: the next message copied out and
        acknowledged, with one call into the core (``_take_now``, in
        ``_fast.c``) when it is there and has at most _COPY_ROOM bytes.
        Returns (value followed by key, key length); None when nothing came
        within ``timeout`` or the consumer was closed meanwhile."""
        if self._copy is None or self._i < self._n or self._spills or self._closing:
            return self._take_copied_waiting(timeout, 0)
        r = self._take_now()  # holds the GIL: no close() can come in between
        if r.__class__ is bytes:
            return r, self._copy_fields[_KLEN]
        if r == 0 and timeout == 0:
            return None
        return self._take_copied_waiting(timeout, r)

    def _take_copied_waiting(self, timeout: Optional[float], r: int) -> Optional[Tuple[bytes, int]]:
        """_take_copied after a first call returned ``r`` (0: nothing yet; 1:
        one taken, not copied): waiting up to ``timeout`` seconds, and every
        other case."""
        if self._copy is None:
            self._copy = ffi.new("char[]", _COPY_ROOM)
            self._copy_out = ffi.new("uint64_t[]", _FIELDS)
            self._copy_fields = memoryview(ffi.buffer(self._copy_out)).cast("Q")
            self._set_take(int(ffi.cast("uintptr_t", self._copy_out)),
                           int(ffi.cast("uintptr_t", self._copy)), _COPY_ROOM)
        copied = 0  # of what _take_now took: nothing, or it would have returned it
        while True:
            if r < 0:
                raise error(r, f"poll of {self.topic!r}")
            if r:
                got = self._finish_taken(self._copy_fields, r, copied, self._copy)
                if got:
                    return got[0]  # else a dead letter, passed on: look again
            if self._i < self._n or self._spills:  # fetched before, or a spill to move: as poll does
                return self._copied(self.poll(timeout))
            r = self._take_call(self._copy_out, 1, self._copy, _COPY_ROOM, timeout)
            if r == 0:
                return None
            copied = self._copied_n[0]

    def _take_copied_many(self, max_messages: int, timeout: Optional[float]) -> List[Tuple[Any, int]]:
        """_take_copied for up to ``max_messages`` (waiting up to ``timeout``
        for the first), with one call into the core for as many as fit in
        _MANY_ROOM bytes: a list of (value followed by key, key length)."""
        if self._many is None:
            self._many = ffi.new("char[]", _MANY_ROOM)
        while True:
            if self._i < self._n or self._spills:
                m = self.poll(timeout)
                return [] if m is None else [self._copied(m)]
            self._make_room(max_messages)
            n = self._take_call(self._out, max_messages, self._many, _MANY_ROOM, timeout)
            if n == 0:
                return []
            got = self._finish_taken(self._fields, n, self._copied_n[0], self._many)
            if got:
                return got

    def _take_call(self, out: Any, max_messages: int, buf: Any, cap: int,
                   timeout: Optional[float]) -> int:
        """shmbus_take_copy in slices of _WAIT_SLICE (close() and Ctrl-C are
        seen): how many were taken, 0 when none came within ``timeout`` or the
        consumer was closed."""
        deadline = None if not timeout else time.monotonic() + seconds(timeout, "timeout")
        while True:
            self._busy = True
            try:
                if self._closing:
                    return self._closed_result()
                left = _WAIT_SLICE if deadline is None else min(_WAIT_SLICE, deadline - time.monotonic())
                wait = 0 if timeout == 0 or left <= 0 else int(left * 1e9)
                n = _take_copy(self._h, out, max_messages, buf, cap, wait, self._spin if wait else 0,
                               self._copied_n)
            finally:
                self._busy = False
                if self._closing:
                    self._release()
            if n < 0 and n != _INTERRUPTED:
                raise error(n, f"poll of {self.topic!r}")
            if n > 0 or self._closing or timeout == 0 or (
                    deadline is not None and time.monotonic() >= deadline):
                return max(n, 0)

    def _finish_taken(self, f: Any, n: int, copied: int, buf: Any) -> List[Tuple[Any, int]]:
        """The ``n`` deliveries ``take_copy`` left in ``f``: the first ``copied``
        are in ``buf``, the rest taken and not acknowledged (copied and acked
        here, the long way; dead letters passed on)."""
        got: List[Tuple[Any, int]] = []
        if copied:
            whole = memoryview(bytes(ffi.buffer(buf, sum(f[j + _VLEN] + f[j + _KLEN] for j in
                                                        range(0, copied * _FIELDS, _FIELDS)))))
            at = 0
            for j in range(0, copied * _FIELDS, _FIELDS):
                end = at + f[j + _VLEN] + f[j + _KLEN]
                got.append((whole[at:end], f[j + _KLEN]))
                at = end
        if copied < n:
            rest = f[copied * _FIELDS:n * _FIELDS].tolist()
            if any(rest[j + _FLAGS] & _DEAD for j in range(0, len(rest), _FIELDS)):
                rest = self._pass_dead_letters(rest)
            flat = self._flat = _fields_of(rest, self._gens)
            self._i = self._n = len(rest)
            self._held = 0
            for j in range(0, len(rest), _FIELDS):
                got.append(self._copied(_message(self, flat, j)))
        return got

    def _copied(self, m: Optional[Message]) -> Optional[Tuple[bytes, int]]:
        """The long way of _take_copied: a message taken by poll, copied and acked."""
        if m is None:
            return None
        key = m.key or b""
        data = m.value + key
        self.ack(m)
        return data, len(key)

    def _fetch(self, max_messages: int, timeout: Optional[float]) -> int:
        """One call into the core for up to ``max_messages`` deliveries (waiting up
        to ``timeout``), which also commits everything handed out before."""
        self._busy = True
        try:
            if self._closing:
                return self._closed_result()
            self._make_room(max_messages)
            deadline = None if not timeout else time.monotonic() + seconds(timeout, "timeout")
            while True:
                n = self._call_checked(max_messages, timeout, deadline)
                if n == 0:
                    return 0
                records = self._fields[:n * _FIELDS]
                flags = records[_FLAGS::_FIELDS]
                if self._manual and any(flags) and any(f & _DEAD for f in flags):
                    records = self._pass_dead_letters(records.tolist())
                    n = len(records) // _FIELDS
                    if n == 0:
                        if timeout == 0 or (deadline is not None and time.monotonic() >= deadline):
                            return 0
                        continue
                self._flat = _fields_of(records, self._gens)
                self._n = n * _FIELDS
                self._held = 0
                return n
        finally:
            self._busy = False
            if self._closing:
                self._release()

    def _make_room(self, max_messages: int) -> None:
        """Room for ``max_messages`` deliveries; releases what was handed out."""
        if len(self._out) < max_messages * _FIELDS:
            self._out = ffi.new("uint64_t[]", max_messages * _FIELDS)
            self._fields = memoryview(ffi.buffer(self._out)).cast("Q")
        self._flat = ()  # every message handed out so far is released now
        self._columns = None
        self._i = self._n = 0

    def _call_checked(self, max_messages: int, timeout: Optional[float],
                      deadline: Optional[float]) -> int:
        """Deliveries now in ``_out``: 0 on timeout or when closed meanwhile."""
        n = self._call(max_messages, timeout, deadline)
        if n < 0 and n != _INTERRUPTED:
            raise error(n, f"poll of {self.topic!r}")
        if n <= 0 or self._closing:  # closed meanwhile: hand out nothing
            return 0
        return n

    def _call(self, max_messages: int, timeout: Optional[float], deadline: Optional[float]) -> int:
        """shmbus_poll_wait in slices of _WAIT_SLICE, so that close() and Ctrl-C are seen."""
        if self._spills:
            n = self._poll_with_spill(max_messages)
            if n != 0 or timeout == 0:
                return n
        if timeout is None:
            n = _poll_wait(self._h, self._out, max_messages, _SLICE_NS, self._spin)
            while n == 0 and not self._closing:
                n = self._poll_with_spill(max_messages) if self._spills else 0
                if n == 0:
                    n = _poll_wait(self._h, self._out, max_messages, _SLICE_NS, self._spin)
            return n
        if timeout == 0:
            return _poll_wait(self._h, self._out, max_messages, 0, 0)
        while True:
            left = min(_WAIT_SLICE, deadline - time.monotonic())
            n = _poll_wait(self._h, self._out, max_messages, int(max(left, 0) * 1e9), self._spin)
            if n or left <= 0 or self._closing:
                return n
            if self._spills:
                n = self._poll_with_spill(max_messages)
                if n:
                    return n

    def _poll_with_spill(self, max_messages: int) -> int:
        """on_full="spill": a poll that finds the ring empty for this consumer moves
        what the spill holds into the ring (producers do it too as they send, but a
        spill must not wait for the next send), then polls again."""
        n = _poll_wait(self._h, self._out, max_messages, 0, 0)
        if n != 0:
            return n
        m = self._map
        waiting = [i for i in range(m.partitions) if lib.shmbus_spill_waiting(m.handle, i)]
        if not waiting:
            return 0
        if self._drainer is None:
            self._drainer = Producer(m, None, None)
        for i in waiting:
            r = lib.shmbus_spill_drain(self._drainer._h, i)
            if r < 0:
                raise error(r, f"moving the spill of {self.topic!r} partition {i}")
        return _poll_wait(self._h, self._out, max_messages, 0, 0)

    def _pass_dead_letters(self, flat: List[int]) -> List[int]:
        """Publishes the dead letters among fetched deliveries; returns the others."""
        keep: List[int] = []
        for j in range(0, len(flat), _FIELDS):
            record = flat[j:j + _FIELDS]
            if not record[_FLAGS] & _DEAD:
                keep += record
                continue
            m = _message(self, record, 0)
            try:
                self._dead.publish(m, record[_FLAGS])
            except MessageReleasedError:
                pass  # overwritten (drop_oldest) before it could be passed on: gone
            lib.shmbus_dead_lettered(self._h, record[_PARTITION], record[_OFFSET])
        return keep

    def _closed_result(self) -> int:
        if self._h is None:
            raise self._closed()
        return 0

    def __iter__(self) -> Iterator[Message]:
        """Messages as they arrive; ends quietly when the consumer is closed."""
        while not self._closing:
            try:
                msg = self.poll(None)
            except ClosedError:  # closed by another thread since the check above
                return
            if msg is not None:
                yield msg

    def subscribe(self, callback: Any, retrying: Any = None) -> Any:
        """Push delivery: ``callback(msg)`` is called for each message in a
        background thread until ``stop()`` of the returned :class:`Subscription`
        (or until the consumer is closed).  With ``ack="manual"`` a message is
        acked when the callback returns; when it raises, ``retrying`` (a
        :class:`Retrying`, default ``Retrying()``) chooses between a delayed
        ``nack`` and the dead letters.  One message at a time: a slow callback
        holds back the stream (backpressure), nothing queues in memory.  Do not
        poll the consumer from another thread meanwhile.  ``callback`` may be
        ``"module:function"``."""
        from ._handling import Subscription
        if self._h is None:
            raise self._closed()
        return Subscription(self, callback, retrying)

    def __aiter__(self) -> AsyncIterator[Message]:
        return self._aiter()

    async def _aiter(self) -> AsyncIterator[Message]:
        while not self._closing:
            try:
                msg = await self.poll_async(None)
            except ClosedError:  # closed since the check above
                return
            if msg is not None:
                yield msg

    async def poll_async(self, timeout: Optional[float] = None) -> Optional[Message]:
        """``poll`` for asyncio, without blocking the event loop: the waiting is a
        futex wait in a worker thread (no busy polling) that takes nothing; the
        message is taken on the loop's thread once there is one.  So cancelling
        it loses no message.  ``None`` waits until a message arrives or the
        consumer is closed (then None).  One task at a time polls a consumer."""
        if timeout is not None:
            timeout = seconds(timeout, "timeout")
        deadline = None if timeout is None else time.monotonic() + timeout
        loop = asyncio.get_running_loop()
        while True:
            msg = self.poll(0)
            if msg is not None or self._closing:
                return msg
            left = _WAIT_SLICE if deadline is None else min(_WAIT_SLICE, deadline - time.monotonic())
            if left <= 0:
                return None
            await loop.run_in_executor(None, self._wait_ready, left)

    def _wait_ready(self, timeout: float) -> None:
        """Up to ``timeout`` seconds until a delivery is there (taking nothing)."""
        self._busy = True
        try:
            if not self._closing and self._h is not None:
                lib.shmbus_wait(self._h, int(timeout * 1e9), self._spin)
        finally:
            self._busy = False
            if self._closing:
                self._release()

    # -- acknowledgement and position ----------------------------------------------

    def ack(self, messages: Any) -> None:
        """Acknowledge a message or a list of them (``ack="manual"``): they are done
        for the group and never delivered again.  Acknowledging a message twice, or
        one redelivered to another member after its ``ack_timeout``, does nothing.
        With ``ack="auto"`` messages are committed by the next poll, so this only
        checks its argument.  A message of another consumer raises AckError."""
        if messages.__class__ is Message and messages._c is self and self._manual:
            f, i = messages._f, messages._i  # the common case, by the shortest path
            if not f[i + _FLAGS] & ACKED:
                if self._h is None:
                    raise self._closed()
                f[i + _FLAGS] |= ACKED
                if f.gens is self._gens or self._not_abandoned(f, i):
                    _ack(self._h, f[i + _PARTITION], f[i + _OFFSET])
            return
        if self._h is None:
            raise self._closed()
        if isinstance(messages, Message):
            self._own(messages)
            return
        if not isinstance(messages, (list, tuple)):
            raise TypeError(f"ack takes a Message or a list of them, not {type(messages).__name__}")
        for m in messages:
            self._own(m)
        if not self._manual:
            return
        if len(self._pairs) < 2 * len(messages):
            self._pairs = ffi.new("uint64_t[]", 2 * len(messages))
        pairs = self._pairs
        n = 0
        for m in messages:
            f, i = m._f, m._i
            if not f[i + _FLAGS] & ACKED:
                f[i + _FLAGS] |= ACKED
                if f.gens is not self._gens and not self._not_abandoned(f, i):
                    continue
                pairs[n] = f[i + _PARTITION]
                pairs[n + 1] = f[i + _OFFSET]
                n += 2
        if n:
            lib.shmbus_ack_batch(self._h, pairs, n // 2)

    def nack(self, message: Message, delay: float = 0.0, error: Any = None) -> None:
        """Give a message back (``ack="manual"``): it is delivered again (to any
        member under ``ordering="none"``; under ``"partition"`` the partition's
        later messages wait for it) not before ``delay`` seconds, or goes to the
        dead letters if it has had ``max_deliveries`` deliveries.  ``error`` (a
        string or an exception) is kept in the dead letter's ``shmbus.error``
        header (an exception as ``"Type: text"``, its type also in
        ``shmbus.error_type``) when this consumer is the one that passes it on."""
        if self._h is None:
            raise self._closed()
        if not self._manual:
            raise AckError("nack() needs ack='manual'; this consumer acknowledges automatically")
        self._own(message)
        delay = seconds(delay, "delay", allow_none=False)
        if delay > MAX_DELAY:
            raise ConfigError(f"delay must be at most {MAX_DELAY:.0f} seconds")
        f, i = message._f, message._i
        if f[i + _FLAGS] & ACKED:
            return
        f[i + _FLAGS] |= ACKED
        if f.gens is not self._gens and not self._not_abandoned(f, i):
            return
        if error is not None:
            self._dead.remember(f[i + _PARTITION], f[i + _OFFSET], error)
        lib.shmbus_nack(self._h, f[i + _PARTITION], f[i + _OFFSET], int(delay * 1e9))

    def dead_letter(self, message: Message, error: Any = None) -> None:
        """Send a message to the dead letters now (``ack="manual"``), whatever its
        delivery count: for a failure that no retry will mend.  It is published
        to the consumer's ``dead_letter`` topic (dropped and counted without one)
        with ``shmbus.reason`` ``"rejected"`` and ``error`` as :meth:`nack` keeps
        it, then finished for the group.  Published first: a process that dies in
        between leaves it to be delivered again, never lost."""
        if self._h is None:
            raise self._closed()
        if not self._manual:
            raise AckError("dead_letter() needs ack='manual'; this consumer acknowledges automatically")
        self._own(message)
        f, i = message._f, message._i
        if f[i + _FLAGS] & ACKED:
            return
        if f.gens is self._gens or self._not_abandoned(f, i):
            self._dead.publish(message, 0, reason=REJECTED, error=error)
            f[i + _FLAGS] |= ACKED
            lib.shmbus_dead_lettered(self._h, f[i + _PARTITION], f[i + _OFFSET])
        else:
            f[i + _FLAGS] |= ACKED

    def _not_abandoned(self, f: List[Any], i: int) -> bool:
        """Whether no seek of its partition came since the delivery at f[i]."""
        p = f[i + _PARTITION]
        return f.gens[p] == self._gens[p]

    def _own(self, m: Any) -> None:
        if not isinstance(m, Message):
            raise TypeError(f"ack takes Message objects, not {type(m).__name__}")
        if m._c is not self:
            raise AckError(f"message at offset {m.offset} of partition {m.partition} of "
                           f"{m.topic!r} was delivered to another consumer")

    def seek(self, partition: int, offset: int) -> None:
        """Read ``partition`` from ``offset`` on (replay, or skip ahead).  An offset
        before the oldest message still retained lands on the oldest one (under
        ``retention="consumed"``: on the oldest this group has not released);
        past the published end raises ConfigError.  Messages fetched and not yet
        handed out are dropped (a named group gets them back, undelivered).

        A named group moves for all its members: under ``ordering="partition"``
        only the partition's current owner may seek it (ConfigError otherwise;
        a new member owns its partitions from its first poll), and under
        ``ordering="none"`` a named group cannot seek.  What the group had in
        flight in that partition is abandoned (acking it does nothing), and
        its committed offset becomes ``offset``, as a Kafka commit after a seek
        would make it."""
        h = self._seekable()
        if isinstance(partition, bool) or not isinstance(partition, int):
            raise TypeError("partition must be an int")
        if isinstance(offset, bool) or not isinstance(offset, int):
            raise TypeError("offset must be an int")
        if not 0 <= partition < len(self._maps):
            raise ConfigError(f"partition must be between 0 and {len(self._maps) - 1}")
        if offset < 0:
            raise ConfigError(f"offset must be >= 0, got {offset}")
        end = self._end(self._map.handle, partition)
        if offset > end:
            raise ConfigError(f"offset {offset} is past the end of partition {partition} ({end})")
        self._drop_fetched()
        if lib.shmbus_seek(h, partition, offset) == lib.SHMBUS_EBUSY:
            raise ConfigError(f"partition {partition} of {self.topic!r} is not this consumer's to "
                              "move now: under ordering='partition' only its owner seeks it")
        self._seeked(partition)

    def seek_to_beginning(self) -> None:
        """Every partition from its oldest message still retained."""
        self._seek_all(lambda t, i: 0)

    def seek_to_end(self) -> None:
        """Every partition from its end: only messages published from now on."""
        self._seek_all(self._end)

    def seek_to_time(self, ns: int) -> None:
        """Every partition from its first message stamped at or after ``ns``
        (nanoseconds since the epoch), or its end if none is."""
        if isinstance(ns, bool) or not isinstance(ns, int):
            raise TypeError("ns must be an int (nanoseconds since the epoch)")
        self._seek_all(lambda t, i: lib.shmbus_offset_for_time(t, i, ns))

    def _seek_all(self, offset_of: Callable[[Any, int], int]) -> None:
        """Every partition this consumer may move (a named group's: those it owns)."""
        h = self._seekable()
        self._drop_fetched()
        for i in range(len(self._maps)):
            if lib.shmbus_seek(h, i, offset_of(self._map.handle, i)) >= 0:
                self._seeked(i)

    def _seeked(self, partition: int) -> None:
        gens = list(self._gens)
        gens[partition] += 1
        self._gens = tuple(gens)

    def _drop_fetched(self) -> None:
        """Deliveries fetched and not handed out go (back to a named group)."""
        flat, i, n = self._flat, self._i, self._n
        if i < n and self.group is not None:
            pairs = [x for j in range(i, n, _FIELDS) for x in (flat[j + _PARTITION], flat[j + _OFFSET])]
            lib.shmbus_give_back(self._h, ffi.new("uint64_t[]", pairs), len(pairs) // 2)
        self._flat = ()
        self._columns = None
        self._i = self._n = 0

    @staticmethod
    def _end(topic: Any, partition: int) -> int:
        """The published end of a partition."""
        return lib.shmbus_end_offset(topic, partition)

    def _seekable(self) -> Any:
        if self._h is None:
            raise self._closed()
        if self.group is not None and self._ordering == "none":
            raise ConfigError("a named group with ordering='none' cannot seek: every member "
                              "reads every partition (use ordering='partition')")
        return self._h

    def lag(self) -> int:
        """Messages published but not yet committed by this consumer's group."""
        if self._h is None:
            raise self._closed()
        return lib.shmbus_lag(self._h)

    def _still_there(self, partition: int, position: int) -> bool:
        h = self._h
        return h is not None and bool(lib.shmbus_still_there(h, partition, position, 0))

    # -- lifetime ------------------------------------------------------------------

    def _orphan(self) -> None:
        self._closing = True  # in a forked child: raises ClosedError, saying why
        self._n = 0
        super()._orphan()

    def close(self) -> None:
        """Leave the group; a private group ends.  Safe from any thread: a poll
        waiting in another thread returns None and the iteration ends."""
        if self._closing:
            return
        self._closing = True
        flat, i, n = self._flat, self._i, self._n
        self._n = 0  # poll() stops handing out fetched deliveries
        self._flat = ()  # and the messages it handed out are released
        self._columns = None
        if i < n and self.group is not None:  # fetched, never handed out: they go back
            unread = [x for j in range(i, n, _FIELDS) for x in (flat[j + _PARTITION], flat[j + _OFFSET])]
            self._unread = ffi.new("uint64_t[]", unread)
        if self._busy:
            lib.shmbus_wake_consumers(self._map.handle)
        else:
            self._release()

    def _release(self) -> None:
        if self._unread is not None and self._h is not None:
            lib.shmbus_give_back(self._h, self._unread, len(self._unread) // 2)
        self._detach(lib.shmbus_consumer_close)
        self._dead.close()
        if self._drainer is not None:
            self._drainer.close()

    @property
    def closed(self) -> bool:
        return self._closing
