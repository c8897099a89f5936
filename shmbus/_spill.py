"""Spill files of on_full="spill" topics: one per partition, named after the
partition's segment, in the topic's spill directory (stored in the topic's
metadata, so every process finds the same files).  The C core appends to them
and moves records back; this module only makes, opens and removes them."""
import os
import stat
import tempfile
from typing import List, Optional

from . import _names, _paths
from ._errors import ConfigError, ShmbusError
from ._native import lib

DEFAULT_DIR = "shmbus-spill"  # in the system temporary directory, shared like /tmp


def directory(spill_dir: Optional[str]) -> str:
    """The spill directory a new topic stores: the given one, or the default
    (shared by every user, like /tmp: it must be a real directory, owned by
    root or this user, and sticky if anyone may write in it)."""
    if spill_dir is None:
        path = _paths.directory(os.path.join(tempfile.gettempdir(), DEFAULT_DIR), "spill_dir",
                                mode=0o1777)
        st = os.lstat(path)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid not in (0, os.geteuid()) or \
                (st.st_mode & 0o002 and not st.st_mode & stat.S_ISVTX):
            raise ConfigError(f"the default spill_dir {path!r} is not safe to use (a symbolic "
                              "link, another user's, or writable by all without the sticky bit)")
    else:
        path = _paths.directory(spill_dir, "spill_dir")
    if len(os.fsencode(path)) >= lib.SHMBUS_MAX_PATH:
        raise ConfigError(f"spill_dir {path!r} is longer than {lib.SHMBUS_MAX_PATH - 1} bytes")
    return path


def path(spill_dir: str, bus: str, topic: str, partition: int) -> str:
    return os.path.join(spill_dir, _names.partition_segment(bus, topic, partition) + ".spill")


def open_files(spill_dir: str, bus: str, topic: str, partitions: int, mode: int,
               owner: int) -> List[int]:
    """A file descriptor per partition, each file created if missing (with the
    topic's mode).  A file must belong to the topic's owner or to this user: one
    that another user made in a shared directory is refused, as it could read or
    forge what the topic spills."""
    fds: List[int] = []
    try:
        for i in range(partitions):
            name = path(spill_dir, bus, topic, i)
            try:
                fd = os.open(name, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW,
                             mode & 0o777)
            except OSError as e:  # the directory went, or is not one: say which file
                raise ShmbusError(f"spill file {name!r} cannot be opened: {e.strerror}") from None
            fds.append(fd)
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_uid not in (owner, os.geteuid()):
                raise ShmbusError(f"spill file {name!r} is not a regular file of the topic's "
                                  f"owner (uid {owner}) or of this user: refused")
            if st.st_uid == os.geteuid() and stat.S_IMODE(st.st_mode) != mode & 0o777:
                os.fchmod(fd, mode & 0o777)
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
