"""Telling a bus that no live process uses, and removing it (``shmbus gc``,
``shmbus rm``).

Every process with a bus open holds the open lock of the bus's marker segment
shared, and every process with a topic mapped holds the open lock of the
topic's metadata segment shared (see ``_segment.hold_open``); the kernel drops
them when the process dies, however it dies.  A topic's creator holds its
create lock until the topic is finished.  So a bus is unused when all of these
can be taken exclusively: :func:`claim` takes them all, and while it holds them
nobody can open the bus (an opener waits for the shared lock, then finds the
names gone and makes a new bus).  Disk buses are never reclaimed: their files
are their data."""
import os
from typing import Dict, List, Optional

from . import _names, _segment
from ._core import check
from ._native import lib
from ._topic import close_fd, remove_segments


def segments(directory: str, bus: str) -> List[str]:
    """The names of a bus's segments in ``directory``: its marker, its topics'."""
    marker = _names.bus_segment(bus)
    return [s for s in _segment.list_names(directory, marker)
            if s == marker or s.startswith(marker + ":")]


def topics(directory: str, bus: str) -> List[str]:
    """The bus's topics with a segment in ``directory`` (finished or not)."""
    out = []
    for s in segments(directory, bus):
        parsed = _names.parse_segment(s)
        if parsed and parsed[1] is not None and parsed[1] not in out:
            out.append(parsed[1])
    return out


def size(directory: str, names: List[str]) -> int:
    """Bytes of those segments (those removed meanwhile count nothing)."""
    total = 0
    for n in names:
        try:
            total += os.stat(os.path.join(directory, n)).st_size
        except FileNotFoundError:
            pass
    return total


class Claim:
    """The exclusive open locks of a bus's marker and topics, held until
    :meth:`release` (or :meth:`remove`)."""

    def __init__(self, directory: str, bus: str, topic: Optional[str]):
        self.directory = directory
        self.bus = bus
        self.topic = topic
        self.fds: List[int] = []

    def remove(self) -> Dict[str, object]:
        """Unlink what the claim covers; what was removed, as
        ``{"bus", "topics", "bytes"}``."""
        try:
            names = segments(self.directory, self.bus)
            if self.topic is not None:
                names = [n for n in names if _names.parse_segment(n)[1] == self.topic]
            gone = [self.topic] if self.topic is not None else topics(self.directory, self.bus)
            freed = size(self.directory, names)
            for t in gone:
                remove_segments(self.directory, self.bus, t)
            if self.topic is None:
                for n in segments(self.directory, self.bus):  # the marker, and any stray
                    _segment.unlink(self.directory, n)
            return {"bus": self.bus, "topics": gone, "bytes": freed}
        finally:
            self.release()

    def release(self) -> None:
        for fd in self.fds:
            close_fd(fd)
        self.fds = []


def claim(directory: str, bus: str, topic: Optional[str] = None) -> Optional[Claim]:
    """The bus (or one of its topics) claimed for removal, or None while a live
    process has it open or is creating a topic in it."""
    c = Claim(directory, bus, topic)
    marker = _names.bus_segment(bus)
    names = [_names.meta_segment(bus, topic)] if topic is not None else \
        [marker] + [_names.meta_segment(bus, t) for t in topics(directory, bus)]
    try:
        for name in names:
            try:
                fd = _segment.open_fd(directory, name)
            except FileNotFoundError:
                continue  # a topic with partitions left and no metadata, or no marker
            c.fds.append(fd)
            if check(lib.shmbus_open_exclusive(fd), name) != 1:
                return None
            if name != marker and check(lib.shmbus_creator_gone(fd), name) != 1:
                return None  # a topic being created
        claimed, c = c, None
        return claimed
    finally:
        if c is not None:
            c.release()


def in_use(directory: str, name: str) -> bool:
    """Whether a live process has the segment (a bus's marker, a topic's
    metadata) open; looking changes nothing."""
    try:
        fd = _segment.open_fd(directory, name)
    except FileNotFoundError:
        return False
    try:
        return lib.shmbus_open_held(fd) == 1
    finally:
        close_fd(fd)
