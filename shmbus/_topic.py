"""A topic's segments mapped into this process, and the C topic handle over them.

One TopicMap per (Bus, topic); producers and consumers hold references to it and
it is unmapped when the last one lets go, never while a C call may still use it."""
import logging
import os
import time
from typing import Any, Dict, List, Optional

from . import _names, _segment, _spill
from ._core import check, error
from ._errors import CorruptSegmentError, TopicNotFoundError, UnsafeSegmentError
from ._native import ffi, lib
from ._snapshot import Snapshotter

INIT_WAIT = 2.0  # seconds an opener waits for a creator to finish a topic
RECOVERY_WAIT = 30.0  # seconds an opener waits for another's recovery of a disk topic
SWEEP_FIELDS = ("claims", "deliveries", "owners", "groups")
_log = logging.getLogger("shmbus")


def read_info(meta: _segment.Segment, name: str) -> Dict[str, int]:
    """The topic's configuration as stored in its metadata segment."""
    info = ffi.new("struct shmbus_topic_info *")
    r = lib.shmbus_meta_read(meta.ptr, meta.size, info)
    if r == lib.SHMBUS_EVERSION:
        found = lib.shmbus_segment_version(meta.ptr, meta.size)
        raise CorruptSegmentError(
            f"topic {name!r} has layout version {found}; this shmbus reads version "
            f"{lib.SHMBUS_LAYOUT_VERSION}"
        )
    check(r, f"topic {name!r}")
    out = {f: getattr(info, f) for f in dir(info)}
    out["spill_dir"] = os.fsdecode(ffi.string(info.spill_dir))
    return out


def open_meta(directory: str, bus: str, topic: str) -> _segment.Segment:
    """A topic's metadata segment, once its creator has finished it.  A creator
    that died before (its create lock free, no version written) leaves a topic
    that never existed: it is removed, and TopicNotFoundError raised.  One that
    lives and has not finished within INIT_WAIT raises CorruptSegmentError."""
    name = _names.meta_segment(bus, topic)
    deadline = time.monotonic() + INIT_WAIT
    while True:
        try:
            meta = _segment.Segment.open_sized(directory, name, lib.shmbus_meta_size())
        except FileNotFoundError:
            raise TopicNotFoundError(f"topic {topic!r} does not exist on bus {bus!r}") from None
        if meta is not None:
            if lib.shmbus_segment_version(meta.ptr, meta.size) != 0:
                return meta
            meta.close()
        if take_over(directory, bus, topic):
            raise TopicNotFoundError(f"topic {topic!r} does not exist on bus {bus!r} (its creator "
                                     "died before finishing it; what it left was removed)")
        if time.monotonic() >= deadline:
            raise CorruptSegmentError(f"topic {topic!r} of bus {bus!r} is still being created by "
                                      f"a live process after {INIT_WAIT} s")
        time.sleep(0.005)


def take_over(directory: str, bus: str, topic: str) -> bool:
    """True when the topic's metadata segment is gone, or was left unfinished by
    a creator that died (then this call removes the topic's segments); False
    when the topic is finished, or its creator lives."""
    name = _names.meta_segment(bus, topic)
    try:
        fd = _segment.open_fd(directory, name)
    except FileNotFoundError:
        return True
    try:
        if check(lib.shmbus_creator_gone(fd), f"topic {topic!r}") != 1:
            return False
        # the create lock is ours now (until fd closes): nobody finishes the topic meanwhile
        if _segment.version(fd, lib.shmbus_meta_size()) != 0:
            return False
        if _segment.same_file(fd, directory, name):
            _log.warning("bus %r topic %r: its creator died before finishing it; removed",
                         bus, topic)
            remove_segments(directory, bus, topic)
        return True
    finally:
        os.close(fd)


def remove_segments(directory: str, bus: str, topic: str) -> None:
    """Unlink a topic's segments, and its spill files if it has any: partitions
    first, the metadata last (while it exists, no new topic of the name can be
    made)."""
    meta = _names.meta_segment(bus, topic)
    try:  # a spill topic's files are elsewhere: its metadata says where
        seg = _segment.Segment.open(directory, meta, lib.shmbus_meta_size(), wait=0)
    except (FileNotFoundError, CorruptSegmentError, UnsafeSegmentError):
        seg = None
    if seg is not None:
        info = ffi.new("struct shmbus_topic_info *")
        if lib.shmbus_meta_read(seg.ptr, seg.size, info) == lib.SHMBUS_OK and \
                info.on_full == lib.SHMBUS_ON_FULL_SPILL:
            _spill.remove_files(os.fsdecode(ffi.string(info.spill_dir)), bus, topic,
                                info.partitions)
        seg.close()
    prefix = meta[: -len("meta")]
    for name in list(_segment.list_names(directory, prefix)):
        if name != meta:
            _segment.unlink(directory, name)
    _segment.unlink(directory, meta)


class TopicMap:
    """The mapped segments of one topic, in ``directory`` (a disk bus's own, or
    /dev/shm).  A disk topic's first opener recovers it (see :func:`recover`)."""

    def __init__(self, directory: str, bus: str, topic: str, liveness_ns: int, disk: bool = False,
                 sweep: bool = True):
        self.bus = bus
        self.name = topic
        self.directory = directory
        self.refs = 1
        self.segments: List[_segment.Segment] = []
        self.handle = ffi.NULL
        self.spill_fds: List[int] = []
        self._snapshotter: Optional[Snapshotter] = None
        meta = open_meta(directory, bus, topic)
        self.segments.append(meta)
        try:
            if not disk:  # (a disk topic's opener takes the open lock below, to recover)
                _segment.hold_open(meta.fd, f"topic {topic!r}")
                if not meta.is_current():
                    raise TopicNotFoundError(f"topic {topic!r} of bus {bus!r} was removed")
            self.info = read_info(meta, topic)
            self.partitions = self.info["partitions"]
            # the first process to open a disk topic recovers it, alone
            first = disk and check(lib.shmbus_open_exclusive(meta.fd), f"topic {topic!r}") == 1
            need = lib.shmbus_partition_size(self.info["capacity"], self.info["slot_count"],
                                             self.info["dedup_capacity"])
            for i in range(self.partitions):
                name = _names.partition_segment(bus, topic, i)
                if first:
                    _restore_size(os.path.join(directory, name), need)
                try:  # sized before the metadata was finished: a short one is damaged
                    seg = _segment.Segment.open(directory, name, need, wait=0)
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
            if self.info["on_full"] == lib.SHMBUS_ON_FULL_SPILL:
                self.spill_fds = _spill.open_files(self.info["spill_dir"], bus, topic,
                                                   self.partitions, self.info["mode"],
                                                   os.fstat(meta.fd).st_uid)
                check(lib.shmbus_topic_set_spill(h, ffi.new("int[]", self.spill_fds),
                                                 self.partitions))
            if disk:
                check(lib.shmbus_topic_set_files(h, ffi.new("int[]", [s.fd for s in parts]),
                                                 self.partitions))
                if not first:  # it falls to this process if the one recovering dies
                    first = check(lib.shmbus_open_shared(meta.fd, int(RECOVERY_WAIT * 1e9)),
                                  f"topic {topic!r} (being recovered by another process)") == 1
                if first:
                    recover(h, self.partitions, bus, topic)
                    check(lib.shmbus_open_recovered(meta.fd), f"topic {topic!r}")
        except BaseException:
            if self.handle != ffi.NULL:
                lib.shmbus_topic_detach(self.handle)
            self._unmap()
            raise
        self.meta = meta
        # what a dead process left, put right before this process uses the topic
        # (a monitor does not: it shows what is there)
        self.attach_sweep = self.sweep() if sweep else dict.fromkeys(SWEEP_FIELDS, 0)
        # per partition: the mapping and a memoryview over it, for message bytes
        self.maps = [s.mm for s in parts]
        self.views = [memoryview(s.mm).toreadonly() for s in parts]  # readers never write

    def is_current(self) -> bool:
        """Whether the topic's name still refers to the segments mapped here (it
        may have been deleted, or deleted and created again)."""
        return self.meta.is_current()

    def lock_fd(self) -> int:
        return self.meta.open_fd()

    def sweep(self) -> Dict[str, int]:
        """The recovery sweep (see ``shmbus_topic_sweep``): what it recovered."""
        out = ffi.new("struct shmbus_sweep_result *")
        fd = self.lock_fd()
        try:
            check(lib.shmbus_topic_sweep(self.handle, fd, out), f"sweep of topic {self.name!r}")
        finally:
            close_fd(fd)
        return {k: getattr(out, k) for k in SWEEP_FIELDS}

    def snapshotter(self) -> Snapshotter:
        """This topic's :class:`Snapshotter` (made on first use)."""
        if self._snapshotter is None:
            self._snapshotter = Snapshotter(self.handle, self.partitions, self.info["capacity"],
                                            self.info["max_messages"], self.name)
        return self._snapshotter

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
        for fd in self.spill_fds:
            close_fd(fd)
        self.spill_fds = []


def _restore_size(path: str, size: int) -> None:
    """A disk partition file cut short (a crash of the file system, a copy that
    stopped) gets its size back; what was cut reads as zeros, which recovery
    then treats as an unwritten tail (or as damage, if good records follow)."""
    try:
        have = os.stat(path).st_size
    except FileNotFoundError:
        return
    if have < size:
        _log.warning("%s: %d bytes, %d expected: extended; recovery checks what is left",
                     path, have, size)
        os.truncate(path, size)


def recover(handle: Any, partitions: int, bus: str, topic: str) -> None:
    """Recovery of a disk topic after every process that had it open is gone:
    each partition keeps its records from the head up to the last good one; an
    incomplete tail is dropped and logged (and counted in stats' ``discarded``);
    a damaged record that good records follow raises CorruptSegmentError naming
    its partition and offset."""
    bad = ffi.new("uint64_t *")
    for i in range(partitions):
        r = lib.shmbus_recover(handle, i, bad)
        if r == lib.SHMBUS_ECORRUPT:
            raise CorruptSegmentError(
                f"topic {topic!r} of bus {bus!r}: partition {i} is damaged at offset {bad[0]} "
                "(a record whose checksum fails, followed by good records)")
        check(r, f"recovery of topic {topic!r}")
        if r:
            _log.warning("bus %r topic %r partition %d: discarded an incomplete tail of %d "
                         "record(s) at recovery", bus, topic, i, r)


def close_fd(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass
