"""Producer: writes messages to a topic."""
import array
import asyncio
import os
import threading
import time
from typing import Any, Iterable, Mapping, Optional, Tuple, Union

from . import _array, _headers
from ._config import ON_FULL, ON_FULL_READY, choice, seconds
from ._core import NULL, check, error
from ._fast import Core
from ._errors import BusFull, ClosedError, ConfigError, MessageTooLargeError, ShmbusError
from ._message import Offset
from ._native import ffi, lib
from ._handle import Handle
from ._topic import TopicMap

Key = Union[bytes, str, None]
_FULL = lib.SHMBUS_FULL
_send = lib.shmbus_send
_tuple_new = tuple.__new__
_WAIT_SLICE = 0.25  # seconds per C wait, so that Ctrl-C and close() are seen
SPIN = 50e-6  # seconds a blocked send spins before it sleeps
# Guards _waiting and _closing between close() and send_async's room waits in
# worker threads (a slow path: never taken by send itself).
_ROOM_LOCK = threading.Lock()
SPILL_LOCK_WAIT = 10.0  # seconds a send waits for another process's use of the spill


def _as_bytes(value: Any) -> bytes:
    if isinstance(value, str):
        raise TypeError("value must be bytes or a buffer, not str (encode it, or use a serializer)")
    try:
        return memoryview(value).tobytes()
    except TypeError:
        raise TypeError(f"value must be bytes or a buffer, not {type(value).__name__}") from None


def _joined(values: Iterable[Any]):
    """The values end to end, their lengths, and the longest length."""
    items = values if isinstance(values, list) else list(values)
    try:  # bytes and other flat buffers join without a Python loop
        data = b"".join(items)
        lengths = array.array("Q", map(len, items))
    except TypeError:
        data = None
    if data is None or len(data) != sum(lengths):  # str, or buffers of wider items
        items = [_as_bytes(v) for v in items]
        data = b"".join(items)
        lengths = array.array("Q", map(len, items))
    return data, lengths, max(lengths, default=0)


def key_bytes(key: Key) -> Optional[bytes]:
    if key is None or type(key) is bytes:
        return key
    if isinstance(key, str):
        return key.encode()
    if isinstance(key, (bytearray, memoryview)):
        return bytes(key)
    raise TypeError(f"key must be bytes or str, not {type(key).__name__}")


class Producer(Handle):
    """Writes messages to one topic.  Create with :meth:`Bus.producer`.

    When the topic is full, ``on_full`` decides: ``"block"`` waits up to ``timeout``
    seconds (None: no limit) and then raises :class:`BusFull`; ``"drop_newest"``
    refuses the message (``send`` returns None, ``send_many`` counts it out, and
    the topic counts the drop); ``"error"`` raises :class:`BusFull` at once;
    ``"spill"`` (a property of the topic, not to be overridden) appends it to the
    partition's spill file, from which it comes back into the ring in order as
    space frees: ``send`` then returns an :class:`Offset` whose ``offset`` is
    None (the offset is given when the record enters the ring), and raises
    :class:`BusFull` once the spill holds ``spill_bytes``.
    """

    # _single lives in the C base (_fast.Core), where send() reads it
    __slots__ = ("on_full", "timeout", "_max", "_partitions", "_next", "_accepted", "_first",
                 "_dedup", "_waiting", "_closing")

    def __init__(self, topic: TopicMap, on_full: Optional[str], timeout: Optional[float]):
        self._waiting = 0  # room waits of send_async in worker threads
        self._closing = False
        if on_full is not None:
            choice(on_full, ON_FULL, "on_full")
            if on_full not in ON_FULL_READY:
                raise NotImplementedError(f"on_full={on_full!r} is not implemented yet")
        spills = topic.info["on_full"] == lib.SHMBUS_ON_FULL_SPILL
        if on_full is not None and (on_full == "spill") != spills:
            raise ConfigError(
                f"on_full={on_full!r}: a topic spills to disk, or not, for all its producers "
                f"(topic {topic.name!r} has on_full={'spill' if spills else 'another policy'})")
        self.on_full = on_full or next(k for k, v in ON_FULL.items() if v == topic.info["on_full"])
        self.timeout = seconds(timeout, "timeout")
        self._max = topic.info["max_message_size"]
        self._partitions = topic.partitions
        self._single = topic.partitions == 1
        self._next = 0
        self._accepted = ffi.new("uint32_t *")
        self._first = ffi.new("uint64_t *")
        # sends with a msg_id: the topic keeps a table of them, and does not spill
        self._dedup = topic.info["dedup_capacity"] > 0 and topic.info["on_full"] != lib.SHMBUS_ON_FULL_SPILL
        self._attach(topic, lib.shmbus_producer_open, "producer")

    # -- sending -------------------------------------------------------------------

    send = Core._send_fast  # one bytes value to a one-partition topic, in C; else _send_general

    def _send_general(self, value: Any, key: Key = None, headers: Optional[Mapping[str, Any]] = None,
                      partition: Optional[int] = None, msg_id: Any = None,
                      timeout: Optional[float] = None) -> Optional[Offset]:
        """send(value, key=None, headers=None, partition=None, msg_id=None,
        timeout=None): publish one message; returns its :class:`Offset`, or None
        when ``on_full="drop_newest"`` refused it.  ``value`` is bytes or any
        buffer; ``key`` (bytes or str) picks the partition by a stable hash unless
        ``partition`` is given; ``headers`` is a small dict of str to str or
        bytes.  With a ``msg_id`` (str or bytes), a message whose id was sent to
        its partition within the topic's ``dedup_window`` is not published
        again: the :class:`Offset` of the first is returned, and the duplicate
        counted.  A keyless message with an id goes to the partition its id
        picks, so that a resend meets the first.  (Its shortest path is in C:
        ``_fast.c``.)"""
        h, value, n, k, klen = self._prepare(value, key, timeout)
        if msg_id is not None:
            return self._send_once(value, n, k, klen, headers, partition, msg_id, timeout)[0]
        if headers is None:
            hb, hlen = NULL, 0
        else:
            hb = _headers.encode(headers)
            hlen = len(hb)
        if partition is None:
            if self._partitions == 1:
                partition = 0
            elif key is not None:
                partition = lib.shmbus_partition_for_key(k, klen, self._partitions)
            else:
                partition = self._next
                self._next = (partition + 1) % self._partitions
        else:
            self._check_partition(partition)
        r = _send(h, partition, value, n, k, klen, hb, hlen)
        if r >= 0:
            return _tuple_new(Offset, (partition, r))
        if r == _FULL:  # no lambda here: it would make cells of these locals on every call
            return self._full(timeout, (partition, value, n, k, klen, hb, hlen))
        raise self._error(r, partition, n, klen, hlen)

    def send_once(self, value: Any, msg_id: Union[str, bytes], key: Key = None,
                  headers: Optional[Mapping[str, Any]] = None, partition: Optional[int] = None,
                  timeout: Optional[float] = None) -> Tuple[Optional[Offset], bool]:
        """``send`` with a ``msg_id``, telling whether this call published it:
        ``(offset, True)`` for an id new within the dedup window, ``(offset of
        the first, False)`` for a duplicate, ``(None, False)`` when
        ``on_full="drop_newest"`` refused it.  (An event store's optimistic
        concurrency rests on it: two appends of one version, one wins.)"""
        if msg_id is None:
            raise TypeError("send_once needs a msg_id (str or bytes)")
        _, value, n, k, klen = self._prepare(value, key, timeout)
        return self._send_once(value, n, k, klen, headers, partition, msg_id, timeout)

    def _prepare(self, value: Any, key: Key, timeout: Optional[float]) -> Tuple[Any, Any, int, Any, int]:
        """(handle, value, its length, key, its length) for the core, checked."""
        h = self._h
        if h is None or self._closing:
            raise self._closed()
        if timeout and timeout < 0:
            raise ConfigError(f"timeout must be >= 0 or None, got {timeout}")
        if type(value) is bytes:
            n = len(value)
        else:
            value, n = self._buffer(value)
        if key is None:
            return h, value, n, NULL, 0
        k = key_bytes(key)
        return h, value, n, k, len(k)

    def send_many(self, values: Iterable[Any], key: Key = None,
                  partition: Optional[int] = None, timeout: Optional[float] = None) -> int:
        """Publish many messages with one call into the core per batch; returns how
        many were accepted (fewer than given only under ``"drop_newest"``).  When
        it raises BusFull, the messages before ``e.accepted`` were published.

        ``values`` is a list (or iterable) of bytes or buffers, or a numpy array:
        then each element along its first axis is one message (a row of a 2-D
        array, a record of a structured array), sent without a Python object per
        message; :meth:`Consumer.poll_columns` reads them back the same way."""
        h = self._h
        if h is None or self._closing:
            raise self._closed()
        if timeout and timeout < 0:
            raise ConfigError(f"timeout must be >= 0 or None, got {timeout}")
        data, lengths, longest = _array.rows(values) if _array.is_array(values) else _joined(values)
        if not len(lengths):
            return 0
        k = key_bytes(key)
        klen = len(k) if k else 0
        if partition is None:
            if k is not None:
                partition = lib.shmbus_partition_for_key(k, klen, self._partitions)
            else:
                partition = self._next
                self._next = (partition + 1) % self._partitions
        self._check_partition(partition)
        if longest > self._max:
            raise MessageTooLargeError(
                f"message of {longest} bytes exceeds max_message_size {self._max}")
        if klen > lib.SHMBUS_MAX_KEY_SIZE:
            raise MessageTooLargeError(f"key of {klen} bytes exceeds {lib.SHMBUS_MAX_KEY_SIZE}")
        buf = ffi.from_buffer(data)
        lens = ffi.from_buffer("uint64_t[]", lengths)
        acc = self._accepted
        sent = at = 0
        count = len(lengths)
        deadline = None
        while sent < count:
            r = lib.shmbus_send_batch(h, partition, buf + at, lens + sent, count - sent,
                                      NULL if k is None else k, klen, acc)
            if r == _FULL and self.on_full == "spill":  # one by one, through the spill
                for i in range(sent, count):
                    v = data[at:at + lengths[i]]
                    try:
                        self._spill((partition, v, len(v), NULL if k is None else k, klen, NULL, 0))
                    except BusFull as e:
                        e.accepted = i
                        raise
                    at += lengths[i]
                return count
            if r == _FULL:
                if self.on_full == "drop_newest":
                    lib.shmbus_count_drop(h, partition, count - sent)
                    break
                try:
                    if deadline is None:
                        deadline = self._deadline(partition, timeout)
                    self._wait_for_room(partition, lengths[sent] + klen, deadline)
                except BusFull as e:
                    e.accepted = sent
                    raise
                continue
            if r < 0:
                e = self._error(r, partition, longest, klen, 0)
                e.accepted = sent + acc[0]  # published before the failure: not to send again
                raise e
            done = acc[0]
            if sent + done < count:  # the rest goes in another call: find where it starts
                at += int(sum(lengths[sent:sent + done]))
            sent += done
        return sent

    def send_array(self, array: Any, key: Key = None, headers: Optional[Mapping[str, Any]] = None,
                   partition: Optional[int] = None, timeout: Optional[float] = None) -> Optional[Offset]:
        """Publish a numpy array; the consumer gets it back with ``Message.array()``."""
        data, descr = _array.prepare(array)
        h = dict(headers or {})
        h[_headers.ARRAY] = descr
        return self.send(data, key=key, headers=h, partition=partition, timeout=timeout)

    def flush(self, timeout: Optional[float] = None) -> int:
        """Nothing is buffered in the producer: a returned send is in shared
        memory already.  On a disk bus, flush also puts every send of this
        producer on disk (whatever the topic's fsync) before it returns.
        Returns 0: the number of messages still waiting, as Kafka clients do."""
        if self._h is not None:
            check(lib.shmbus_producer_sync(self._h), f"flush of {self.topic!r}")
        return 0

    # -- the slow paths ------------------------------------------------------------

    def _buffer(self, value: Any):
        if isinstance(value, str):
            raise TypeError("value must be bytes or a buffer, not str (encode it, or use a serializer)")
        try:
            mv = memoryview(value)
        except TypeError:
            raise TypeError(f"value must be bytes or a buffer, not {type(value).__name__}") from None
        if not mv.contiguous:
            mv = memoryview(mv.tobytes())
        return ffi.from_buffer(mv), mv.nbytes

    def _send_once(self, value: Any, n: int, k: Any, klen: int, headers: Optional[Mapping[str, Any]],
                   partition: Optional[int], msg_id: Any,
                   timeout: Optional[float]) -> Tuple[Optional[Offset], bool]:
        """send with a msg_id: ``shmbus_send_once`` looks the id up in the
        partition's dedup table and publishes only a new one; (offset, whether
        this call published it)."""
        if type(msg_id) is str:
            raw_id = msg_id.encode()
        elif isinstance(msg_id, (bytes, bytearray, memoryview)):
            raw_id = msg_id = bytes(msg_id)
        else:
            raise TypeError(f"msg_id must be str or bytes, not {type(msg_id).__name__}")
        if not self._dedup:
            if self.on_full == "spill":
                raise ConfigError(f"topic {self.topic!r} spills (on_full='spill'): its sends take "
                                  "no msg_id")
            raise ConfigError(f"topic {self.topic!r} has dedup_capacity=0: it keeps no msg_ids")
        hb = _headers.msg_id_entry(msg_id)
        if headers:
            hb = _headers.encode(headers) + hb
        if partition is None:
            by = raw_id if k is NULL else k
            partition = lib.shmbus_partition_for_key(by, len(by), self._partitions)
        else:
            self._check_partition(partition)
        deadline = None
        while True:
            r = lib.shmbus_send_once(self._h, partition, value, n, k, klen, hb, len(hb), raw_id,
                                     len(raw_id), self._first)
            if r >= 0:
                return Offset(partition, r), True
            if r == lib.SHMBUS_DUPLICATE:
                return Offset(partition, self._first[0]), False
            if r != _FULL:
                raise self._error(r, partition, n, klen, len(hb))
            if self.on_full == "drop_newest":
                lib.shmbus_count_drop(self._h, partition, 1)
                return None, False
            if deadline is None:
                deadline = self._deadline(partition, timeout)
            self._wait_for_room(partition, n + klen + len(hb), deadline)

    def _check_partition(self, partition: Any) -> None:
        if isinstance(partition, bool) or not isinstance(partition, int):
            raise TypeError(f"partition must be an int, not {type(partition).__name__}")
        if not 0 <= partition < self._partitions:
            raise ConfigError(
                f"partition {partition} out of range: topic {self.topic!r} has {self._partitions}"
            )

    def _error(self, code: int, partition: Any, n: int, klen: int, hlen: int) -> Exception:
        if code == lib.SHMBUS_ESYNC:
            return self._unsynced(partition)
        if code == lib.SHMBUS_EINVAL:
            self._check_partition(partition)
        if code == lib.SHMBUS_ETOOLARGE:
            if n > self._max:
                return MessageTooLargeError(f"message of {n} bytes exceeds max_message_size {self._max}")
            if klen > lib.SHMBUS_MAX_KEY_SIZE:
                return MessageTooLargeError(f"key of {klen} bytes exceeds {lib.SHMBUS_MAX_KEY_SIZE}")
            return MessageTooLargeError(
                f"headers of {hlen} bytes exceed {lib.SHMBUS_MAX_HEADERS_SIZE}")
        return error(code, f"send to {self.topic!r}")

    def _full(self, timeout: Optional[float], args: tuple) -> Optional[Offset]:
        """The ring had no room for ``_send(h, *args)``: apply on_full."""
        partition, _, n, _, klen, _, hlen = args
        if self.on_full == "spill":
            return self._spill(args)
        if self.on_full == "drop_newest":
            lib.shmbus_count_drop(self._h, partition, 1)
            return None
        deadline = self._deadline(partition, timeout)
        while True:
            self._wait_for_room(partition, n + klen + hlen, deadline)
            r = _send(self._h, *args)
            if r >= 0:
                return Offset(partition, r)
            if r != _FULL:
                raise error(r, f"send to {self.topic!r}")

    def _unsynced(self, partition: int) -> Exception:
        """A send was published, and the sync its topic's fsync asks for failed."""
        err = ffi.errno
        r = lib.shmbus_producer_unsynced(self._h)
        where = f"offset {r}" if r >= 0 else "the spill"
        return ShmbusError(f"send to {self.topic!r} partition {partition} was published ({where}) "
                           f"but could not be synced to disk: {os.strerror(err)}; do not send it "
                           "again")

    def _spill(self, args: tuple) -> Offset:
        """on_full="spill": through the spill file, in order with what it holds."""
        partition = args[0]
        r = lib.shmbus_spill_send(self._h, *args, int(SPILL_LOCK_WAIT * 1e9))
        if r >= 0:
            return Offset(partition, r)
        if r == lib.SHMBUS_SPILLED:
            return Offset(partition, None)
        if r == _FULL:
            raise BusFull(f"topic {self.topic!r} partition {partition}: the ring is full and "
                          "its spill file holds spill_bytes")
        if r == lib.SHMBUS_EBUSY:
            raise BusFull(f"topic {self.topic!r} partition {partition}: the spill stayed locked "
                          f"for {SPILL_LOCK_WAIT} s")
        if r == lib.SHMBUS_ESYNC:
            raise self._unsynced(partition)
        raise error(r, f"spill of {self.topic!r} partition {partition}")

    def _deadline(self, partition: int, timeout: Optional[float]) -> float:
        """When a blocked send gives up (inf: never); raises at once under "error"."""
        if self.on_full == "error":
            raise BusFull(f"topic {self.topic!r} partition {partition} is full")
        timeout = self.timeout if timeout is None else seconds(timeout, "timeout")
        return float("inf") if timeout is None else time.monotonic() + timeout

    def _wait_for_room(self, partition: int, record_len: int, deadline: float) -> None:
        left = deadline - time.monotonic()
        if left <= 0:
            e = BusFull(f"topic {self.topic!r} partition {partition} stayed full")
            e.partition, e.record_len = partition, record_len
            raise e
        lib.shmbus_wait_space(self._h, partition, record_len, int(min(left, _WAIT_SLICE) * 1e9),
                              int(SPIN * 1e9))
        if self._h is None:
            raise ClosedError("producer was closed while waiting for room")

    # -- asyncio -------------------------------------------------------------------

    async def send_async(self, value: Any, key: Key = None, headers: Optional[Mapping[str, Any]] = None,
                         partition: Optional[int] = None, msg_id: Any = None,
                         timeout: Optional[float] = None) -> Optional[Offset]:
        """``send`` for asyncio.  A send that finds room returns at once; under
        ``on_full="block"`` a full ring is waited for in a worker thread (a futex
        wait that writes nothing), so the event loop runs on, and the message is
        then sent from the loop's thread: cancelling it while it waits sends
        nothing.  ``timeout`` as for ``send`` (then BusFull)."""
        if self.on_full != "block":
            return self.send(value, key, headers, partition, msg_id, timeout)
        timeout = self.timeout if timeout is None else seconds(timeout, "timeout")
        deadline = float("inf") if timeout is None else time.monotonic() + timeout
        loop = asyncio.get_running_loop()
        while True:
            try:
                return self.send(value, key, headers, partition, msg_id, 0)
            except BusFull as e:
                left = deadline - time.monotonic()
                if left <= 0 or getattr(e, "partition", None) is None:
                    raise
                partition = e.partition  # a keyless send keeps the partition it drew
                await loop.run_in_executor(None, self._wait_room, e.partition, e.record_len,
                                           min(left, _WAIT_SLICE))

    def _wait_room(self, partition: int, record_len: int, timeout: float) -> None:
        """In a worker thread: the handle stays open until this wait is over,
        even if the producer is closed meanwhile (close() leaves it to us)."""
        with _ROOM_LOCK:
            if self._closing or self._h is None:
                return
            self._waiting += 1
        try:
            lib.shmbus_wait_space(self._h, partition, record_len, int(timeout * 1e9), int(SPIN * 1e9))
        finally:
            with _ROOM_LOCK:
                self._waiting -= 1
                last = self._closing and not self._waiting
            if last:
                self._detach(lib.shmbus_producer_close)

    # -- lifetime ------------------------------------------------------------------

    def close(self) -> None:
        """Detach from the topic.  Everything sent is already in shared memory.
        Safe while a ``send_async`` waits for room in a worker thread: that
        wait ends, and the send raises ClosedError."""
        with _ROOM_LOCK:
            self._closing = True
            self._raw = 0  # the C path of send stands aside; the Python one refuses
            if self._waiting:
                return
        self._detach(lib.shmbus_producer_close)

    @property
    def closed(self) -> bool:
        return self._h is None or self._closing
