"""A topic's segments mapped into this process, and the C topic handle over them.

One TopicMap per (Bus, topic); producers and consumers hold references to it and
it is unmapped when the last one lets go, never while a C call may still use it."""
import os
import time
from typing import Dict, List

from . import _names, _segment
from ._core import check, error
from ._errors import CorruptSegmentError, TopicNotFoundError
from ._native import ffi, lib

INIT_WAIT = 2.0  # seconds an opener waits for a creator to finish a topic


def read_info(meta: _segment.Segment, name: str) -> Dict[str, int]:
    """The topic's configuration as stored in its metadata segment."""
    info = ffi.new("struct shmbus_topic_info *")
    deadline = time.monotonic() + INIT_WAIT
    while True:
        r = lib.shmbus_meta_read(meta.ptr, meta.size, info)
        if r != lib.SHMBUS_ENOTREADY or time.monotonic() >= deadline:
            break
        time.sleep(0.005)
    if r == lib.SHMBUS_EVERSION:
        found = lib.shmbus_segment_version(meta.ptr, meta.size)
        raise CorruptSegmentError(
            f"topic {name!r} has layout version {found}; this shmbus reads version "
            f"{lib.SHMBUS_LAYOUT_VERSION}"
        )
    check(r, f"topic {name!r}")
    return {f: getattr(info, f) for f in dir(info)}


class TopicMap:
    """The mapped segments of one topic."""

    def __init__(self, bus: str, topic: str, liveness_ns: int):
        self.bus = bus
        self.name = topic
        self.refs = 1
        self.segments: List[_segment.Segment] = []
        try:
            meta = _segment.Segment.open(_names.meta_segment(bus, topic), lib.shmbus_meta_size())
        except FileNotFoundError:
            raise TopicNotFoundError(f"topic {topic!r} does not exist on bus {bus!r}") from None
        self.segments.append(meta)
        try:
            self.info = read_info(meta, topic)
            self.partitions = self.info["partitions"]
            need = lib.shmbus_partition_size(self.info["capacity"], self.info["slot_count"])
            for i in range(self.partitions):
                try:
                    seg = _segment.Segment.open(_names.partition_segment(bus, topic, i), need)
                except FileNotFoundError:
                    raise CorruptSegmentError(f"topic {topic!r} lacks partition {i}") from None
                self.segments.append(seg)
            parts = self.segments[1:]
            ptrs = ffi.new("void *[]", [s.ptr for s in parts])
            sizes = ffi.new("uint64_t[]", [s.size for s in parts])
            err = ffi.new("int *")
            h = lib.shmbus_topic_attach(meta.ptr, meta.size, meta.fd, ptrs, sizes,
                                        self.partitions, liveness_ns, err)
            if h == ffi.NULL:
                raise error(err[0], f"topic {topic!r}")
            self.handle = h
        except BaseException:
            self._unmap()
            raise
        self.meta = meta
        # per partition: the mapping and a memoryview over it, for message bytes
        self.maps = [s.mm for s in parts]
        self.views = [memoryview(s.mm).toreadonly() for s in parts]  # readers never write

    def is_current(self) -> bool:
        """Whether the topic's name still refers to the segments mapped here (it
        may have been deleted, or deleted and created again)."""
        try:
            st = os.stat(os.path.join(_segment.SHM_DIR, self.meta.name))
        except FileNotFoundError:
            return False
        mine = os.fstat(self.meta.fd)
        return (st.st_ino, st.st_dev) == (mine.st_ino, mine.st_dev)

    def lock_fd(self) -> int:
        return self.meta.open_fd()

    def acquire(self) -> "TopicMap":
        self.refs += 1
        return self

    def release(self) -> None:
        self.refs -= 1
        if self.refs == 0:
            lib.shmbus_topic_detach(self.handle)
            self.handle = ffi.NULL
            for v in self.views:
                try:
                    v.release()
                except BufferError:
                    pass
            self._unmap()

    def _unmap(self) -> None:
        for s in self.segments:
            s.close()
        self.segments = []


def close_fd(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass
