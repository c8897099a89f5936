"""What producers and consumers share: a reference to the topic's mapping, an open
file description whose lock byte tells the others this handle lives, and the C
handle over both."""
import os
from typing import Any, Callable

from ._core import NULL, error
from ._native import ffi
from ._process import process_start_time
from ._topic import TopicMap, close_fd


class Handle:
    __slots__ = ("topic", "_map", "_fd", "_h", "_pid", "__weakref__")

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
        self._pid = os.getpid()

    def _detach(self, close_: Callable[[Any], None]) -> None:
        h, self._h = self._h, None
        if h is None:
            return
        if os.getpid() == self._pid:  # a forked child leaves the parent's handle alone
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
