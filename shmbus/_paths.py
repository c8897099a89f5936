"""Directories shmbus keeps files in (a disk bus's own, a spill directory):
absolute, created if missing, with clear errors for what cannot be used."""
import os
from typing import Any, Optional

from ._errors import ConfigError


def directory(path: Any, what: str, mode: Optional[int] = None) -> str:
    """``path`` as an absolute directory, created (with ``mode``, whatever the
    umask, if given) when missing; its parent must exist."""
    try:
        path = os.path.abspath(os.fsdecode(path))
    except TypeError:
        raise TypeError(f"{what} must be a str or os.PathLike, not {type(path).__name__}") from None
    parent = os.path.dirname(path)
    if not os.path.isdir(parent):
        raise ConfigError(f"{what} {path!r}: its parent {parent!r} is not an existing directory")
    try:
        os.mkdir(path)
        if mode is not None:
            os.chmod(path, mode)
    except FileExistsError:
        if not os.path.isdir(path):
            raise ConfigError(f"{what} {path!r} exists and is not a directory") from None
    except OSError as e:
        raise ConfigError(f"{what} {path!r}: cannot create it: {e.strerror}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError(f"{what} {path!r} is not writable")
    return path


def sync_directory(path: str) -> None:
    """The directory's entries (files made or removed) on disk."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
