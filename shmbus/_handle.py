"""What producers and consumers share: a reference to the topic's mapping, an open
file description whose lock byte tells the others this handle lives, and the C
handle over both."""
import os
import weakref
from typing import Any, Callable

from ._core import NULL, error
from ._errors import ClosedError
from ._fast import Core
from ._native import ffi
from ._process import process_start_time
from ._topic import TopicMap, close_fd

_open: "weakref.WeakSet[Handle]" = weakref.WeakSet()


def _after_fork_in_child() -> None:
    """A forked child does not share its parent's producers and consumers: each
    is the parent's entry in shared memory, and two processes writing through
    one would corrupt it.  In the child they raise ClosedError saying so, and
    the child's copy of each lock's file descriptor is closed, so that the
    lock goes when the parent dies (a child holding it would make a dead
    parent look alive, and its claims would never be recovered)."""
    for h in list(_open):
        h._orphan()


os.register_at_fork(after_in_child=_after_fork_in_child)


class Handle(Core):
    """The C base keeps ``_raw``, the core's handle as an address, for the paths
    written in C; it is set and cleared with ``_h``."""

    __slots__ = ("topic", "_map", "_fd", "_h", "_pid", "_forked", "__weakref__")

    def _attach(self, topic: TopicMap, open_: Callable[..., Any], what: str) -> None:
        """``open_(topic_handle, lock_fd, pid, start_time, err)`` makes the C handle."""
        self.topic = topic.name
        self._h = None
        self._map = topic.acquire()
        self._fd = topic.lock_fd()
        err = ffi.new("int *")
        h = open_(topic.handle, self._fd, os.getpid(), process_start_time(), err)
        if h == NULL:
            close_fd(self._fd)
            topic.release()
            raise error(err[0], f"{what} on {self.topic!r}")
        self._h = h
        self._raw = int(ffi.cast("uintptr_t", h))
        self._pid = os.getpid()
        self._forked = False
        _open.add(self)

    def _orphan(self) -> None:
        if self._h is None:
            return
        self._h = None
        self._raw = 0
        self._forked = True
        close_fd(self._fd)

    def _closed(self) -> ClosedError:
        """The error for a use after close (or in a forked child)."""
        kind = type(self).__name__.lower()
        if getattr(self, "_forked", False):
            return ClosedError(f"{kind} of {self.topic!r} belongs to process {self._pid}; this "
                               f"process was forked from it: open a new {kind} here")
        return ClosedError(f"{kind} is closed")

    def _detach(self, close_: Callable[[Any], None]) -> None:
        h, self._h = self._h, None
        self._raw = 0
        if h is None:
            return
        _open.discard(self)
        close_(h)
        close_fd(self._fd)
        self._map.release()

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            if getattr(self, "_h", None) is not None:
                self.close()
        except Exception:
            pass
