"""Shared-memory segments: created exclusively with exact permission bits, opened,
mapped, closed and unlinked.  Python's multiprocessing.shared_memory is not used:
its resource tracker unlinks segments it did not create (DESIGN invariant 5)."""
import errno
import mmap
import os
import time
from typing import Iterator

import posix_ipc

from ._errors import CorruptSegmentError
from ._native import ffi

SHM_DIR = "/dev/shm"
_POPULATE = getattr(mmap, "MAP_POPULATE", 0)


class Segment:
    """One shared-memory object mapped into this process."""

    __slots__ = ("name", "fd", "size", "mm", "ptr")

    def __init__(self, name: str, fd: int, size: int):
        self.name = name
        self.fd = fd
        self.size = size
        # Page tables are filled at map time: a first lap around a ring would
        # otherwise take a page fault every 4 KiB (about ten times slower).
        self.mm = mmap.mmap(fd, size, flags=mmap.MAP_SHARED | _POPULATE)
        self.ptr = ffi.from_buffer(self.mm)

    @classmethod
    def create(cls, name: str, size: int, mode: int) -> "Segment":
        """Create exclusively (FileExistsError if it exists); ``mode`` is applied
        whatever the umask."""
        try:
            shm = posix_ipc.SharedMemory("/" + name, posix_ipc.O_CREX, mode=mode & 0o777, size=size)
        except posix_ipc.ExistentialError:
            raise FileExistsError(errno.EEXIST, "segment exists", name) from None
        fd = shm.fd
        try:
            os.fchmod(fd, mode & 0o777)
            os.posix_fallocate(fd, 0, size)  # the memory is there now, or ENOSPC now
            return cls(name, fd, size)
        except BaseException:
            os.close(fd)
            unlink(name)
            raise

    @classmethod
    def open(cls, name: str, min_size: int, wait: float = 2.0) -> "Segment":
        """Open an existing segment (FileNotFoundError if missing), waiting up to
        ``wait`` seconds for a creator that has not sized it yet."""
        deadline = time.monotonic() + wait
        while True:
            try:
                shm = posix_ipc.SharedMemory("/" + name)
            except posix_ipc.ExistentialError:
                raise FileNotFoundError(errno.ENOENT, "no such segment", name) from None
            fd = shm.fd
            size = os.fstat(fd).st_size
            if size >= min_size:
                try:
                    return cls(name, fd, size)
                except BaseException:
                    os.close(fd)
                    raise
            os.close(fd)
            if time.monotonic() >= deadline:
                raise CorruptSegmentError(
                    f"segment {name!r} has {size} bytes, fewer than the {min_size} its header needs"
                )
            time.sleep(0.005)

    def open_fd(self) -> int:
        """A new open file description of this segment: a handle's liveness lock
        lives on it, so the kernel drops the lock when the handle's process dies."""
        return os.open(os.path.join(SHM_DIR, self.name), os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)

    def close(self) -> None:
        if self.ptr is None:
            return
        ffi.release(self.ptr)
        self.ptr = None
        try:
            self.mm.close()
        except BufferError:
            pass  # a caller still holds a view; the mapping goes when the view does
        os.close(self.fd)


def unlink(name: str) -> bool:
    """Remove a segment; False if it did not exist."""
    try:
        posix_ipc.unlink_shared_memory("/" + name)
        return True
    except posix_ipc.ExistentialError:
        return False


def exists(name: str) -> bool:
    return os.path.exists(os.path.join(SHM_DIR, name))


def list_names(prefix: str) -> Iterator[str]:
    try:
        names = os.listdir(SHM_DIR)
    except FileNotFoundError:
        return iter(())
    return (n for n in sorted(names) if n.startswith(prefix))

