"""Spill files of on_full="spill" topics: one per partition, named after the
partition's segment, in the topic's spill directory (stored in the topic's
metadata, so every process finds the same files).  The C core appends to them
and moves records back; this module only makes, opens and removes them."""
import os
import tempfile
from typing import List, Optional

from . import _names, _paths
from ._errors import ConfigError
from ._native import lib

DEFAULT_DIR = "shmbus-spill"  # in the system temporary directory, shared like /tmp


def directory(spill_dir: Optional[str]) -> str:
    """The spill directory a new topic stores: the given one, or the default."""
    if spill_dir is None:
        path = _paths.directory(os.path.join(tempfile.gettempdir(), DEFAULT_DIR), "spill_dir",
                                mode=0o1777)
    else:
        path = _paths.directory(spill_dir, "spill_dir")
    if len(os.fsencode(path)) >= lib.SHMBUS_MAX_PATH:
        raise ConfigError(f"spill_dir {path!r} is longer than {lib.SHMBUS_MAX_PATH - 1} bytes")
    return path


def path(spill_dir: str, bus: str, topic: str, partition: int) -> str:
    return os.path.join(spill_dir, _names.partition_segment(bus, topic, partition) + ".spill")


def open_files(spill_dir: str, bus: str, topic: str, partitions: int, mode: int) -> List[int]:
    """A file descriptor per partition, each file created if missing."""
    fds: List[int] = []
    try:
        for i in range(partitions):
            fd = os.open(path(spill_dir, bus, topic, i),
                         os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, mode & 0o777)
            fds.append(fd)
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    return fds


def remove_files(spill_dir: str, bus: str, topic: str, partitions: int) -> None:
    for i in range(partitions):
        try:
            os.unlink(path(spill_dir, bus, topic, i))
        except FileNotFoundError:
            pass
