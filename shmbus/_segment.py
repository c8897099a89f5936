"""Segments: files in a bus's directory (``/dev/shm`` for a memory bus, the bus's
own directory on disk otherwise), created exclusively with exact permission
bits, opened, mapped, closed and unlinked.  A file in ``/dev/shm`` is what
``shm_open`` makes.  Python's multiprocessing.shared_memory is not used: its
resource tracker unlinks segments it did not create (DESIGN invariant 5)."""
import errno
import mmap
import os
import stat
import time
from typing import Any, Iterator, Optional

from ._core import check
from ._errors import CorruptSegmentError, UnsafeSegmentError
from ._native import ffi, lib

SHM_DIR = "/dev/shm"
_POPULATE = getattr(mmap, "MAP_POPULATE", 0)
_FLAGS = os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW


def _unnamed(directory: str, mode: int) -> Optional[int]:
    """A file in ``directory`` without a name yet (O_TMPFILE), or None where the
    file system or /proc cannot make and name one."""
    if not hasattr(os, "O_TMPFILE") or not os.path.isdir("/proc/self/fd"):
        return None
    try:
        return os.open(directory, os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, mode & 0o777)
    except OSError as e:
        if e.errno in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
            return None
        raise


def _name(fd: int, directory: str, name: str) -> None:
    """Give the unnamed file open on ``fd`` its name (linkat following the
    /proc link: os.link uses linkat only when given a directory fd)."""
    dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.link(f"/proc/self/fd/{fd}", name, dst_dir_fd=dfd, follow_symlinks=True)
    finally:
        os.close(dfd)


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
    def create(cls, directory: str, name: str, size: int, mode: int,
               creating: bool = False) -> "Segment":
        """Create exclusively (FileExistsError if it exists); ``mode`` is applied
        whatever the umask.  ``creating``: a topic's metadata segment, whose
        creator holds its create lock until the version is written."""
        path = os.path.join(directory, name)
        if creating:
            fd = _unnamed(directory, mode)
            if fd is not None:  # made whole, locked and sized, then named: no opener sees less
                try:
                    check(lib.shmbus_create_begin(fd), f"creating {name!r}")
                    os.fchmod(fd, mode & 0o777)
                    os.posix_fallocate(fd, 0, size)
                    _name(fd, directory, name)  # FileExistsError if the name is taken
                    return cls(directory, name, fd, size)
                except BaseException:
                    os.close(fd)
                    raise
        fd = os.open(path, _FLAGS | os.O_CREAT | os.O_EXCL, mode & 0o777)
        try:
            if creating:
                check(lib.shmbus_create_begin(fd), f"creating {name!r}")
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
        deadline = time.monotonic() + wait
        while True:
            seg = cls.open_sized(directory, name, min_size)
            if seg is not None:
                return seg
            if time.monotonic() >= deadline:
                size = os.stat(os.path.join(directory, name)).st_size
                raise CorruptSegmentError(
                    f"segment {os.path.join(directory, name)!r} has {size} bytes, fewer than "
                    f"the {min_size} its header needs")
            time.sleep(0.005)

    @classmethod
    def open_sized(cls, directory: str, name: str, min_size: int) -> "Optional[Segment]":
        """Open an existing segment (FileNotFoundError if missing); None while it
        has fewer than ``min_size`` bytes (its creator has not sized it yet)."""
        fd = open_fd(directory, name)
        try:
            size = os.fstat(fd).st_size
            if size >= min_size:
                return cls(directory, name, fd, size)
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
        return None

    def is_current(self) -> bool:
        """Whether the name still refers to this segment (not removed, nor
        removed and made again)."""
        return same_file(self.fd, os.path.dirname(self.path), self.name)

    def open_fd(self) -> int:
        """A new open file description of this segment: a handle's liveness lock
        lives on it, so the kernel drops the lock when the handle's process dies."""
        return open_fd(os.path.dirname(self.path), self.name)

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


def open_fd(directory: str, name: str) -> int:
    """A new open file description of a segment (FileNotFoundError if missing),
    refused (UnsafeSegmentError) unless it is safe to trust: see :func:`check_safe`."""
    path = os.path.join(directory, name)
    try:
        fd = os.open(path, _FLAGS)
    except FileNotFoundError:
        raise FileNotFoundError(errno.ENOENT, "no such segment", name) from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise UnsafeSegmentError(f"segment {path!r} is a symbolic link: refused") from None
        raise
    try:
        check_safe(os.fstat(fd), path)
    except BaseException:
        os.close(fd)
        raise
    return fd


def check_safe(st: os.stat_result, path: str) -> None:
    """A segment is trusted when it is a regular file that others cannot write,
    owned by this user, or shared on purpose (its mode gives read and write to
    its group, and this process is in that group)."""
    if not stat.S_ISREG(st.st_mode):
        raise UnsafeSegmentError(f"segment {path!r} is not a regular file: refused")
    if st.st_mode & stat.S_IWOTH:
        raise UnsafeSegmentError(f"segment {path!r} is writable by every user "
                                 f"(mode {stat.S_IMODE(st.st_mode):04o}): refused")
    if st.st_uid == os.geteuid():
        return
    shared = st.st_mode & 0o060 == 0o060 and (st.st_gid == os.getegid() or
                                              st.st_gid in os.getgroups())
    if not shared:
        raise UnsafeSegmentError(f"segment {path!r} belongs to another user (uid {st.st_uid}) "
                                 "and is not shared with a group of this process: refused")


def same_file(fd: int, directory: str, name: str) -> bool:
    """Whether the name refers to the file open on fd."""
    try:
        st = os.stat(os.path.join(directory, name))
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (st.st_ino, st.st_dev) == (mine.st_ino, mine.st_dev)


def _header(fd: int, size: int) -> Any:
    """The first ``size`` bytes of the segment open on fd, as far as the file
    holds them (a file cut short reads as zeros past its end)."""
    head = bytearray(size)
    got = os.pread(fd, size, 0)
    head[:len(got)] = got
    return ffi.from_buffer(head)


def version(fd: int, header_size: int) -> int:
    """The layout version in the header of the segment open on fd: 0 when none
    was written."""
    return lib.shmbus_segment_version(_header(fd, header_size), header_size)


def created(fd: int) -> int:
    """When the segment open on fd was made (ns since the epoch; 0 if unknown)."""
    n = lib.shmbus_segment_header_size()
    return lib.shmbus_segment_created(_header(fd, n), n)


def hold_open(fd: int, what: str, wait: float = 2.0) -> None:
    """Hold the segment's open lock shared on ``fd`` (until fd's open file
    description closes): every process with a bus or topic open holds it, so
    that ``shmbus gc`` can tell a segment nobody uses (it takes the lock
    exclusively, briefly, to remove one; an opener waits up to ``wait`` seconds)."""
    r = check(lib.shmbus_open_shared(fd, int(wait * 1e9)), what)
    if r == 1:  # nobody held it: we had it exclusively, and share it at once
        check(lib.shmbus_open_recovered(fd), what)


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
