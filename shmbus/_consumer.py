"""Consumer: reads a topic as a member of a group."""
import asyncio
import time
from typing import Any, AsyncIterator, Iterator, List, Optional

from ._config import ACK, ORDERING, START, choice, seconds
from ._core import error
from ._errors import ClosedError, ConfigError, ShmbusError
from ._message import Message
from ._native import ffi, lib
from ._handle import Handle
from ._topic import TopicMap

_FIELDS = lib.SHMBUS_DELIVERY_FIELDS
_poll_wait = lib.shmbus_poll_wait
_INTERRUPTED = lib.SHMBUS_INTERRUPTED
_new = object.__new__
_WAIT_SLICE = 0.25  # seconds per C wait, so that Ctrl-C and close() are seen
_SLICE_NS = int(_WAIT_SLICE * 1e9)
SPIN = 50e-6  # seconds a waiting poll spins before it sleeps on the futex
MAX_BATCH = 65536
# Deliveries fetched per call into the core by poll(); handed out one per poll.
# They are committed together, at the fetch after the last one is handed out.
PREFETCH = 64


class Consumer(Handle):
    """Reads one topic.  Create with :meth:`Bus.consumer`.

    Without a group the consumer has a private group: it receives every message
    published from its start on, in order within each partition, and the group
    goes away when the consumer closes or its process dies.  With
    ``ack="auto"`` a message is committed when the next poll releases it, so
    ``Message.view()`` stays valid until then.
    """

    __slots__ = ("group", "_busy", "_closing", "_maps", "_views", "_out", "_fields", "_flat", "_i",
                 "_n", "_held", "_spin")

    def __init__(self, topic: TopicMap, group: Optional[str], ack: str, ordering: str, start: str,
                 ack_timeout: float, max_deliveries: Optional[int], dead_letter: Optional[str],
                 tethered: bool, spin: float):
        choice(ack, ACK, "ack")
        choice(ordering, ORDERING, "ordering")
        choice(start, START, "start")
        seconds(ack_timeout, "ack_timeout", allow_none=False)
        self._spin = int(seconds(spin, "spin", allow_none=False) * 1e9)
        if max_deliveries is not None and (isinstance(max_deliveries, bool) or not isinstance(max_deliveries, int)):
            raise TypeError("max_deliveries must be an int or None")
        if max_deliveries is not None and max_deliveries < 1:
            raise ConfigError("max_deliveries must be >= 1")
        if not isinstance(tethered, bool):
            raise TypeError("tethered must be a bool")
        if group is not None or ack != "auto" or dead_letter is not None or max_deliveries is not None:
            raise NotImplementedError("named groups and manual acknowledgement are not implemented yet")
        if not tethered:
            raise NotImplementedError("untethered consumers are not implemented yet")
        self.group = group
        self._busy = False
        self._closing = False
        self._maps = topic.maps
        self._views = topic.views
        flags = lib.SHMBUS_GROUP_TETHERED if tethered else 0
        self._attach(topic, lambda t, fd, pid, st, err: lib.shmbus_consumer_open(
            t, fd, pid, st, flags, START[start], err), "consumer")
        self._out = ffi.new("uint64_t[]", PREFETCH * _FIELDS)
        self._fields = memoryview(ffi.buffer(self._out)).cast("Q")
        # deliveries fetched from the core: handed out from _i on; those from
        # _held on are still held by the caller (their views are valid)
        self._flat: Any = ()
        self._i = self._n = self._held = 0

    # -- reading -------------------------------------------------------------------

    def poll(self, timeout: Optional[float] = None) -> Optional[Message]:
        """The next message, or None when ``timeout`` seconds pass first.
        ``timeout=0`` never waits; ``None`` waits until a message arrives or the
        consumer is closed (then None).  Releases the previously polled messages."""
        if timeout and timeout < 0:
            raise ConfigError(f"timeout must be >= 0 or None, got {timeout}")
        i = self._i
        if i < self._n:
            self._held = i
            self._i = i + _FIELDS
            m = _new(Message)
            m._c = self
            m._f = self._flat
            m._i = i
            return m
        if not self._fetch(PREFETCH, timeout):
            return None
        self._i = _FIELDS
        m = _new(Message)
        m._c = self
        m._f = self._flat
        m._i = 0
        return m

    def poll_batch(self, max_messages: int = 1000, timeout: Optional[float] = 0.1) -> List[Message]:
        """Up to ``max_messages`` messages with one call into the core; waits up to
        ``timeout`` seconds for the first.  Maybe empty."""
        if isinstance(max_messages, bool) or not isinstance(max_messages, int):
            raise TypeError("max_messages must be an int")
        if not 1 <= max_messages <= MAX_BATCH:
            raise ConfigError(f"max_messages must be between 1 and {MAX_BATCH}")
        if timeout and timeout < 0:
            raise ConfigError(f"timeout must be >= 0 or None, got {timeout}")
        i = self._i
        if i >= self._n:
            if not self._fetch(max_messages, timeout):
                return []
            i = 0
        end = min(self._n, i + max_messages * _FIELDS)
        self._held = i
        self._i = end
        flat = self._flat
        out = []
        for j in range(i, end, _FIELDS):
            m = _new(Message)
            m._c = self
            m._f = flat
            m._i = j
            out.append(m)
        return out

    def _fetch(self, max_messages: int, timeout: Optional[float]) -> int:
        """One call into the core for up to ``max_messages`` deliveries (waiting up
        to ``timeout``), which also commits everything handed out before."""
        self._busy = True
        try:
            if self._closing:
                return self._closed_result()
            if len(self._out) < max_messages * _FIELDS:
                self._out = ffi.new("uint64_t[]", max_messages * _FIELDS)
                self._fields = memoryview(ffi.buffer(self._out)).cast("Q")
            self._flat = ()  # every message handed out so far is released now
            self._i = self._n = 0
            if timeout is None:
                n = _poll_wait(self._h, self._out, max_messages, _SLICE_NS, self._spin)
                while n == 0 and not self._closing:
                    n = _poll_wait(self._h, self._out, max_messages, _SLICE_NS, self._spin)
            elif timeout == 0:
                n = _poll_wait(self._h, self._out, max_messages, 0, 0)
            else:
                deadline = time.monotonic() + seconds(timeout, "timeout")
                while True:
                    left = min(_WAIT_SLICE, deadline - time.monotonic())
                    n = _poll_wait(self._h, self._out, max_messages, int(max(left, 0) * 1e9),
                                   self._spin)
                    if n or left <= 0 or self._closing:
                        break
            if n < 0 and n != _INTERRUPTED:
                raise error(n, f"poll of {self.topic!r}")
            if n > 0 and not self._closing:  # closed meanwhile: hand out nothing
                self._flat = self._fields[:n * _FIELDS].tolist()
                self._n = n * _FIELDS
                self._held = 0
                return n
            return 0
        finally:
            self._busy = False
            if self._closing:
                self._release()

    def _closed_result(self) -> int:
        if self._h is None:
            raise ClosedError("consumer is closed")
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

    def __aiter__(self) -> AsyncIterator[Message]:
        return self._aiter()

    async def _aiter(self) -> AsyncIterator[Message]:
        while not self._closing:
            msg = self.poll(0)
            if msg is None:
                msg = await asyncio.get_running_loop().run_in_executor(None, self.poll, _WAIT_SLICE)
            if msg is not None:
                yield msg

    # -- acknowledgement and position ----------------------------------------------

    def ack(self, messages: Any) -> None:
        """Acknowledge a message or a list of them.  With ``ack="auto"`` (the only
        mode so far) messages are committed by the next poll, so this does nothing."""
        if self._h is None:
            raise ClosedError("consumer is closed")
        for m in messages if isinstance(messages, (list, tuple)) else (messages,):
            if not isinstance(m, Message):
                raise TypeError(f"ack takes Message objects, not {type(m).__name__}")

    def nack(self, message: Message, delay: float = 0.0) -> None:
        """Ask for a message again (``ack="manual"`` only)."""
        raise ShmbusError("nack() needs ack='manual'; this consumer acknowledges automatically")

    def seek(self, partition: int, offset: int) -> None:
        raise NotImplementedError("seek arrives with log retention")

    def seek_to_beginning(self) -> None:
        raise NotImplementedError("seek arrives with log retention")

    def seek_to_end(self) -> None:
        raise NotImplementedError("seek arrives with log retention")

    def seek_to_time(self, ns: int) -> None:
        raise NotImplementedError("seek arrives with log retention")


    def lag(self) -> int:
        """Messages published but not yet committed by this consumer's group."""
        if self._h is None:
            raise ClosedError("consumer is closed")
        return lib.shmbus_lag(self._h)

    def _still_there(self, partition: int, position: int) -> bool:
        h = self._h
        return h is not None and bool(lib.shmbus_still_there(h, partition, position, 0))

    # -- lifetime ------------------------------------------------------------------

    def close(self) -> None:
        """Leave the group; a private group ends.  Safe from any thread: a poll
        waiting in another thread returns None and the iteration ends."""
        if self._closing:
            return
        self._closing = True
        self._n = 0  # poll() stops handing out fetched deliveries
        self._flat = ()  # and the messages it handed out are released
        if self._busy:
            lib.shmbus_wake_consumers(self._map.handle)
        else:
            self._release()

    def _release(self) -> None:
        self._detach(lib.shmbus_consumer_close)

    @property
    def closed(self) -> bool:
        return self._closing
