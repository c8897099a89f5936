"""Queue: a drop-in for ``multiprocessing.Queue`` over a bus of its own.

The queue is a memory bus named ``queue-PID-TOKEN`` with one topic, ``items``,
read by one group of competing consumers (``ordering="none"``, manual acks:
a get takes one item and finishes it at once, so ``qsize`` and ``full`` count
what is really in the queue).  ``maxsize`` is the topic's exact
``max_messages``; ``max_size_bytes`` its capacity (so an "unbounded" queue is
bounded by bytes, as faster-fifo's is).  A put returns once the item is in
shared memory: there is no feeder thread, and nothing is lost when the putter
exits right after; a putter killed in the middle of a put never blocks the
others (the core's crash safety).

Items are pickled with protocol 5.  An item whose pickle has one out-of-band
buffer (a numpy array, say) is sent as that buffer, copied once into the ring
straight from the array, with the small pickle stream beside it in the record's
key field; a getter copies it out once into a writable buffer the array is
rebuilt on.

A Queue pickles by name: given to a child process (spawn or fork) it opens the
same bus.  Its segments are removed when the last process that has it open
closes it or exits (the bus's open locks tell, as for ``shmbus gc``); if every
user crashed, the next ``Queue()`` made on the host, or ``shmbus gc``, removes
them.  A parent should keep its queue open until its children have opened it.
"""
import atexit
import os
import pickle
import queue
import secrets
import weakref
from typing import Any, Iterable, List, Optional

from . import _names, _reclaim, _segment
from ._bus import Bus
from ._consumer import MAX_BATCH
from ._config import integer
from ._errors import BusFull, BusNotFoundError, ShmbusError
from ._native import lib

PREFIX = "queue-"
TOPIC, GROUP = "items", "getters"
MIN_BYTES = 4096
BYTES_PER_ITEM = 64  # an unbounded queue's index: one entry per 64 bytes of capacity
_open: "weakref.WeakSet[Queue]" = weakref.WeakSet()
_pid = os.getpid()  # this process's, kept current across fork (no getpid per put and get)


def _after_fork() -> None:
    global _pid
    _pid = os.getpid()


os.register_at_fork(after_in_child=_after_fork)


def _remove_if_unused(name: str) -> bool:
    """Remove the queue's bus if no live process has it open."""
    try:
        c = _reclaim.claim(_segment.SHM_DIR, name)
    except ShmbusError:
        return False
    if c is None:
        return False
    c.remove()
    return True


def _sweep_abandoned() -> None:
    """Remove the queues every user of which died without closing them."""
    for seg in _segment.list_names(_segment.SHM_DIR, _names.bus_segment(PREFIX)):
        parsed = _names.parse_segment(seg)
        if parsed is not None and parsed[1] is None:  # a bus's marker
            _remove_if_unused(parsed[0])


def _load(data: Any, klen: int) -> Any:
    """An item from a record's value and key, as put wrote them: a pickle
    (keyless), or an out-of-band buffer (the value) and its pickle (the key)."""
    if not klen:
        return pickle.loads(data)
    split = len(data) - klen
    view = memoryview(data)
    return pickle.loads(view[split:], buffers=[bytearray(view[:split])])


@atexit.register
def _close_all() -> None:
    for q in list(_open):
        q.close()


def _timeout(block: bool, timeout: Optional[float]) -> Optional[float]:
    """The wait of a put or get, as multiprocessing reads block and timeout."""
    if not block:
        return 0.0
    if timeout is None:
        return None
    if timeout < 0:
        raise ValueError("'timeout' must be a non-negative number")
    return float(timeout)


class Queue:
    """A process-safe FIFO queue with ``multiprocessing.Queue``'s interface and
    semantics, plus faster-fifo's ``put_many`` / ``get_many``."""

    def __init__(self, maxsize: int = 0, max_size_bytes: int = 64 * 2**20):
        if isinstance(maxsize, bool) or not isinstance(maxsize, int):
            raise TypeError(f"maxsize must be an int, not {type(maxsize).__name__}")
        integer(max_size_bytes, "max_size_bytes", MIN_BYTES)
        _sweep_abandoned()
        self._maxsize = maxsize if maxsize > 0 else 0
        self._bytes = max_size_bytes
        self._name = f"{PREFIX}{os.getpid()}-{secrets.token_hex(6)}"
        bus = Bus(self._name)
        limit = self._maxsize or max(16, max_size_bytes // BYTES_PER_ITEM)
        bus.create_topic(TOPIC, capacity=max_size_bytes, max_message_size=max_size_bytes,
                         max_messages=limit, on_full="block", dedup_capacity=0)
        self._attach(bus)
        self._consumer_now()  # the group exists from the start: qsize() counts every put

    def _attach(self, bus: Bus) -> None:
        self._bus = bus
        self._pid = _pid
        self._closed = False
        self._producer: Any = None
        self._consumer: Any = None
        _open.add(self)

    # -- handles of this process -------------------------------------------------

    def _check(self) -> None:
        if self._closed:
            raise ValueError(f"Queue {self!r} is closed")
        if self._pid != _pid:  # forked: the parent's handles are not ours
            self._pid = _pid
            self._producer = self._consumer = None

    def _producer_now(self) -> Any:
        self._check()
        if self._producer is None:
            self._producer = self._bus.producer(TOPIC)
        return self._producer

    def _consumer_now(self) -> Any:
        self._check()
        if self._consumer is None:
            self._consumer = self._bus.consumer(TOPIC, group=GROUP, ack="manual", ordering="none",
                                                start="earliest")
        return self._consumer

    # -- put ---------------------------------------------------------------------

    def put(self, obj: Any, block: bool = True, timeout: Optional[float] = None) -> None:
        """Put ``obj``; waits for room up to ``timeout`` (``block=False``: not at
        all), then raises ``queue.Full``.  Returns once it is in shared memory."""
        wait = _timeout(block, timeout)
        p = self._producer_now()
        buffers: List[pickle.PickleBuffer] = []
        stream = pickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
        try:
            if not buffers:
                if p._send_now(stream) < 0:  # full or refused: send waits, or says why
                    p.send(stream) if wait is None else p.send(stream, timeout=wait)
            elif len(buffers) == 1 and len(stream) <= lib.SHMBUS_MAX_KEY_SIZE:
                p.send(buffers[0].raw(), key=stream, timeout=wait)
            else:  # several buffers: one pickle with them in band
                p.send(pickle.dumps(obj, protocol=5), timeout=wait)
        except BusFull:
            raise queue.Full from None

    def put_nowait(self, obj: Any) -> None:
        self.put(obj, False)

    def put_many(self, objs: Iterable[Any], block: bool = True, timeout: Optional[float] = None) -> None:
        """Put every item of ``objs``, in order, with one call into the core;
        ``queue.Full`` if room does not come in time (the items before the one
        that did not fit are in the queue)."""
        wait = _timeout(block, timeout)
        p = self._producer_now()
        streams = [pickle.dumps(o, protocol=5) for o in objs]
        try:
            p.send_many(streams, timeout=wait)
        except BusFull:
            raise queue.Full from None

    # -- get ---------------------------------------------------------------------

    def get(self, block: bool = True, timeout: Optional[float] = None) -> Any:
        """Remove and return an item; waits up to ``timeout`` (``block=False``:
        not at all), then raises ``queue.Empty``."""
        c = self._consumer
        if c is None or self._pid != _pid or self._closed:
            c = self._consumer_now()
        got = c._take_copied(None if block and timeout is None else _timeout(block, timeout))
        if got is None:
            raise queue.Empty
        data, klen = got
        return pickle.loads(data) if not klen else _load(data, klen)

    def get_nowait(self) -> Any:
        return self.get(False)

    def get_many(self, block: bool = True, timeout: Optional[float] = None,
                 max_messages_to_get: int = 1000) -> List[Any]:
        """Up to ``max_messages_to_get`` items at once, waiting up to ``timeout``
        for the first; ``queue.Empty`` if none came (faster-fifo's names)."""
        wait = _timeout(block, timeout)
        integer(max_messages_to_get, "max_messages_to_get", 1)
        got = self._consumer_now()._take_copied_many(min(max_messages_to_get, MAX_BATCH), wait)
        if not got:
            raise queue.Empty
        return [_load(data, klen) for data, klen in got]

    # -- size --------------------------------------------------------------------

    def qsize(self) -> int:
        """Items in the queue now (approximate while others put and get)."""
        return self._consumer_now().lag()

    def empty(self) -> bool:
        return self.qsize() == 0

    def full(self) -> bool:
        return bool(self._maxsize) and self.qsize() >= self._maxsize

    # -- lifetime ----------------------------------------------------------------

    def close(self) -> None:
        """This process puts and gets no more (put and get raise ValueError);
        the last process to close the queue removes it."""
        if self._closed:
            return
        self._closed = True
        _open.discard(self)
        if self._pid == _pid:
            for h in (self._producer, self._consumer):
                if h is not None:
                    h.close()
        self._producer = self._consumer = None
        self._bus.close()
        _remove_if_unused(self._name)

    def join_thread(self) -> None:
        """Nothing to wait for (no feeder thread); like multiprocessing, only
        after close()."""
        if not self._closed:
            raise AssertionError(f"Queue {self!r} not closed")

    def cancel_join_thread(self) -> None:
        """Nothing to cancel: every put is in shared memory when it returns."""

    def __reduce__(self) -> Any:
        return (_reopen, (self._name, self._maxsize, self._bytes))

    def __repr__(self) -> str:
        return f"<shmbus.Queue {self._name}>"

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass


def _reopen(name: str, maxsize: int, max_size_bytes: int) -> Queue:
    q = Queue.__new__(Queue)
    q._maxsize, q._bytes, q._name = maxsize, max_size_bytes, name
    try:
        bus = Bus(name, create=False)
    except BusNotFoundError:
        raise BusNotFoundError(f"queue {name!r} is gone: every process that had it open "
                               "closed it before this one opened it") from None
    q._attach(bus)
    return q
