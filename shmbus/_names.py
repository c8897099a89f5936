"""Name validation and the names of shared-memory segments.

Segment names: ``shmbus:BUS`` marks a bus, ``shmbus:BUS:TOPIC:meta`` holds a topic's
metadata and ``shmbus:BUS:TOPIC:pN`` its partition N.  ``:`` never occurs in a valid
name, so a segment name always splits back into its parts."""
import re

from ._errors import InvalidNameError
from ._native import lib

MAX_NAME = lib.SHMBUS_MAX_NAME
PREFIX = "shmbus"
_VALID = re.compile(r"[A-Za-z0-9_\-][A-Za-z0-9._\-]*\Z")


def check_name(name: object, what: str) -> str:
    """Return ``name`` if it is a valid bus, topic or group name; raise otherwise."""
    if not isinstance(name, str):
        raise TypeError(f"{what} name must be a str, not {type(name).__name__}")
    if not name or len(name) > MAX_NAME or not name.isascii() or not _VALID.match(name):
        raise InvalidNameError(
            f"invalid {what} name {name!r}: use 1 to {MAX_NAME} ASCII letters, digits, "
            "'.', '_' or '-', not starting with '.'"
        )
    return name


def bus_segment(bus: str) -> str:
    return f"{PREFIX}:{bus}"


def meta_segment(bus: str, topic: str) -> str:
    return f"{PREFIX}:{bus}:{topic}:meta"


def partition_segment(bus: str, topic: str, partition: int) -> str:
    return f"{PREFIX}:{bus}:{topic}:p{partition}"


def parse_segment(name: str):
    """Split a segment name into (bus, topic or None, part or None); None if not ours."""
    parts = name.split(":")
    if parts[0] != PREFIX or len(parts) not in (2, 4):
        return None
    if len(parts) == 2:
        return parts[1], None, None
    return parts[1], parts[2], parts[3]
