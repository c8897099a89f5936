"""Consumer: reads a topic as a member of a group."""
import asyncio
import os
import time
from typing import Any, AsyncIterator, Iterator, List, Optional

from ._config import ACK, ORDERING, START, choice, seconds
from ._core import NULL, check, error
from ._errors import ClosedError, ConfigError
from ._message import Message
from ._native import ffi, lib
from ._producer import process_start_time
from ._topic import TopicMap, close_fd

_FIELDS = lib.SHMBUS_DELIVERY_FIELDS
_poll = lib.shmbus_poll
_unpack = ffi.unpack
_new = object.__new__
_WAIT_SLICE = 0.25  # seconds per C wait, so that Ctrl-C and close() are seen
SPIN = 50e-6  # seconds a waiting poll spins before it sleeps on the futex
MAX_BATCH = 65536


class Consumer:
    """Reads one topic.  Create with :meth:`Bus.consumer`.

    Without a group the consumer has a private group: it receives every message
    published from its start on, in order within each partition, and the group
    goes away when the consumer closes or its process dies.  With
    ``ack="auto"`` a message is committed when the next poll releases it, so
    ``Message.view()`` stays valid until then.
    """

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
        self.topic = topic.name
        self.group = group
        self._gen = 0
        self._busy = False
        self._closing = False
        self._map = topic.acquire()
        self._maps = topic.maps
        self._views = topic.views
        self._fd = topic.lock_fd()
        flags = lib.SHMBUS_GROUP_TETHERED if tethered else 0
        err = ffi.new("int *")
        h = lib.shmbus_consumer_open(topic.handle, self._fd, os.getpid(), process_start_time(),
                                     flags, START[start], err)
        if h == NULL:
            close_fd(self._fd)
            topic.release()
            raise error(err[0], f"consumer on {self.topic!r}")
        self._h = h
        self._pid = os.getpid()
        self._out = ffi.new("uint64_t[]", _FIELDS)
        self._batch_out = None

    # -- reading -------------------------------------------------------------------

    def _message(self, d: List[int]) -> Message:
        m = _new(Message)
        m._c = self
        m._d = d
        m._gen = self._gen
        m._value = None
        m._headers = None
        return m

    def poll(self, timeout: Optional[float] = None) -> Optional[Message]:
        """The next message, or None when ``timeout`` seconds pass first.
        ``timeout=0`` never waits; ``None`` waits until a message arrives or the
        consumer is closed (then None).  Releases the previously polled messages."""
        self._busy = True
        try:
            if self._closing:
                return self._closed_result()
            self._gen += 1
            n = _poll(self._h, self._out)
            if n > 0:
                return self._message(_unpack(self._out, _FIELDS))
            if n < 0:
                raise error(n, f"poll of {self.topic!r}")
            if timeout == 0:
                return None
            if self._wait(timeout):
                n = _poll(self._h, self._out)
                if n > 0:
                    return self._message(_unpack(self._out, _FIELDS))
            return None
        finally:
            self._busy = False
            if self._closing:
                self._release()

    def poll_batch(self, max_messages: int = 1000, timeout: Optional[float] = 0.1) -> List[Message]:
        """Up to ``max_messages`` messages with one call into the core; waits up to
        ``timeout`` seconds for the first.  Maybe empty."""
        if isinstance(max_messages, bool) or not isinstance(max_messages, int):
            raise TypeError("max_messages must be an int")
        if not 1 <= max_messages <= MAX_BATCH:
            raise ConfigError(f"max_messages must be between 1 and {MAX_BATCH}")
        self._busy = True
        try:
            if self._closing:
                self._closed_result()
                return []
            out = self._batch_out
            if out is None or len(out) < max_messages * _FIELDS:
                out = self._batch_out = ffi.new("uint64_t[]", max(max_messages, 64) * _FIELDS)
            self._gen += 1
            n = lib.shmbus_poll_batch(self._h, out, max_messages)
            if n == 0 and timeout != 0 and self._wait(timeout):
                n = lib.shmbus_poll_batch(self._h, out, max_messages)
            if n < 0:
                raise error(n, f"poll of {self.topic!r}")
            flat = _unpack(out, n * _FIELDS)
            return [self._message(flat[i:i + _FIELDS]) for i in range(0, n * _FIELDS, _FIELDS)]
        finally:
            self._busy = False
            if self._closing:
                self._release()

    def _wait(self, timeout: Optional[float]) -> bool:
        """Wait until something may be readable; False on timeout or close."""
        timeout = seconds(timeout, "timeout")
        deadline = None if timeout is None else time.monotonic() + timeout
        h = self._h
        while not self._closing:
            left = _WAIT_SLICE if deadline is None else min(_WAIT_SLICE, deadline - time.monotonic())
            if left <= 0:
                return False
            r = lib.shmbus_wait(h, int(left * 1e9), self._spin)
            if r == lib.SHMBUS_OK and not self._closing:
                return True
        return False

    def _closed_result(self) -> None:
        if self._h is None:
            raise ClosedError("consumer is closed")
        return None

    def __iter__(self) -> Iterator[Message]:
        """Messages as they arrive; ends quietly when the consumer is closed."""
        while not self._closing:
            msg = self.poll(None)
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

    # -- position ------------------------------------------------------------------

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
        if self._busy:
            lib.shmbus_wake_consumers(self._map.handle)
        else:
            self._release()

    def _release(self) -> None:
        h, self._h = self._h, None
        if h is None:
            return
        if os.getpid() == self._pid:
            lib.shmbus_consumer_close(h)
        close_fd(self._fd)
        self._map.release()

    @property
    def closed(self) -> bool:
        return self._closing

    def __enter__(self) -> "Consumer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass
