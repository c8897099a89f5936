"""Segments: files in a bus's directory (``/dev/shm`` for a memory bus, the bus's
own directory on disk otherwise), created exclusively with exact permission
bits, opened, mapped, closed and unlinked.  A file in ``/dev/shm`` is what
``shm_open`` makes.  Python's multiprocessing.shared_memory is not used: its
resource tracker unlinks segments it did not create (DESIGN invariant 5)."""
import errno
import mmap
import os
import time
from typing import Iterator

from ._errors import CorruptSegmentError
from ._native import ffi

SHM_DIR = "/dev/shm"
_POPULATE = getattr(mmap, "MAP_POPULATE", 0)
_FLAGS = os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW


class Segment:
    """One segment mapped into this process."""

    __slots__ = ("name", "path", "fd", "size", "mm", "ptr")

    def __init__(self, directory: str, name: str, fd: int, size: int):
        self.name = name
        self.path = os.path.join(directory, name)
        self.fd = fd
        self.size = size
        # Page tables are filled at map time: a first lap around a ring would
        # otherwise take a page fault every 4 KiB (about ten times slower).
        self.mm = mmap.mmap(fd, size, flags=mmap.MAP_SHARED | _POPULATE)
        self.ptr = ffi.from_buffer(self.mm)

    @classmethod
    def create(cls, directory: str, name: str, size: int, mode: int) -> "Segment":
        """Create exclusively (FileExistsError if it exists); ``mode`` is applied
        whatever the umask."""
        path = os.path.join(directory, name)
        fd = os.open(path, _FLAGS | os.O_CREAT | os.O_EXCL, mode & 0o777)
        try:
            os.fchmod(fd, mode & 0o777)
            os.posix_fallocate(fd, 0, size)  # the space is there now, or ENOSPC now
            return cls(directory, name, fd, size)
        except BaseException:
            os.close(fd)
            unlink(directory, name)
            raise

    @classmethod
    def open(cls, directory: str, name: str, min_size: int, wait: float = 2.0) -> "Segment":
        """Open an existing segment (FileNotFoundError if missing), waiting up to
        ``wait`` seconds for a creator that has not sized it yet."""
        path = os.path.join(directory, name)
        deadline = time.monotonic() + wait
        while True:
            try:
                fd = os.open(path, _FLAGS)
            except FileNotFoundError:
                raise FileNotFoundError(errno.ENOENT, "no such segment", name) from None
            size = os.fstat(fd).st_size
            if size >= min_size:
                try:
                    return cls(directory, name, fd, size)
                except BaseException:
                    os.close(fd)
                    raise
            os.close(fd)
            if time.monotonic() >= deadline:
                raise CorruptSegmentError(
                    f"segment {path!r} has {size} bytes, fewer than the {min_size} its header needs"
                )
            time.sleep(0.005)

    def open_fd(self) -> int:
        """A new open file description of this segment: a handle's liveness lock
        lives on it, so the kernel drops the lock when the handle's process dies."""
        return os.open(self.path, _FLAGS)

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


def unlink(directory: str, name: str) -> bool:
    """Remove a segment; False if it did not exist."""
    try:
        os.unlink(os.path.join(directory, name))
        return True
    except FileNotFoundError:
        return False


def exists(directory: str, name: str) -> bool:
    return os.path.exists(os.path.join(directory, name))


def list_names(directory: str, prefix: str) -> Iterator[str]:
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return iter(())
    return (n for n in sorted(names) if n.startswith(prefix))
