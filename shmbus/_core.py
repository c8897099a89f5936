"""Thin Python over the C core: result codes become shmbus exceptions."""
import os

from ._errors import (BusFull, ConfigMismatchError, CorruptSegmentError, MessageTooLargeError,
                      ShmbusError)
from ._native import ffi, lib

NULL = ffi.NULL

_MESSAGES = {
    lib.SHMBUS_ECORRUPT: (CorruptSegmentError, "segment failed validation"),
    lib.SHMBUS_ETOOLARGE: (MessageTooLargeError, "message too large"),
    lib.SHMBUS_EVERSION: (CorruptSegmentError, "segment has another layout version"),
    lib.SHMBUS_ENOTREADY: (CorruptSegmentError, "segment was never finished by its creator"),
    lib.SHMBUS_ENOSLOT: (ShmbusError, "no free entry left in the topic's tables"),
    lib.SHMBUS_EINVAL: (ShmbusError, "invalid argument to the C core"),
    lib.SHMBUS_FULL: (BusFull, "topic is full"),
    lib.SHMBUS_ECONFIG: (ConfigMismatchError,
                         "the group exists with another ack, ordering, max_deliveries or tethered"),
    lib.SHMBUS_EBUSY: (ShmbusError, "the topic's group table stayed locked by another process"),
    lib.SHMBUS_EMEMBERS: (ShmbusError, "the group has live members"),
}


def error(code: int, context: str = "") -> ShmbusError:
    """The exception for a negative result code of the C core."""
    if code in (lib.SHMBUS_ESYS, lib.SHMBUS_ESYNC):
        text = os.strerror(ffi.errno)
        if code == lib.SHMBUS_ESYNC:
            text = f"written, but could not be synced to disk: {text}"
        return ShmbusError(f"{context}: {text}" if context else text)
    cls, text = _MESSAGES.get(code, (ShmbusError, f"C core returned {code}"))
    return cls(f"{context}: {text}" if context else text)


def check(code: int, context: str = "") -> int:
    if code < 0:
        raise error(code, context)
    return code
