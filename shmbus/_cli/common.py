"""What the commands share: naming a bus or topic on the command line, and
reporting a failure (exit 1) or bad usage (exit 2) in one line on stderr."""
import argparse
import os
import sys
from typing import TYPE_CHECKING, List, Optional, Tuple

from .. import _names, _segment
from .._errors import BusNotFoundError, InvalidNameError

if TYPE_CHECKING:
    from .._bus import Bus


class Failed(Exception):
    """A failed operation: its message goes to stderr, the exit status is 1."""


class Usage(Exception):
    """Bad usage: its message goes to stderr, the exit status is 2."""


def add_path(p: argparse.ArgumentParser) -> None:
    p.add_argument("--path", metavar="DIR", default=None,
                   help="the bus is a disk bus kept in DIR (default: a memory bus in /dev/shm)")


def target(text: str, topic_required: bool = False) -> Tuple[str, Optional[str]]:
    """``BUS`` or ``BUS/TOPIC`` as (bus, topic or None), names checked."""
    bus, sep, topic = text.partition("/")
    try:
        _names.check_name(bus, "bus")
        if sep:
            _names.check_name(topic, "topic")
    except InvalidNameError as e:
        raise Usage(str(e)) from None
    if topic_required and not sep:
        raise Usage(f"{text!r}: name a topic as BUS/TOPIC")
    return bus, (topic if sep else None)


def bus_directory(path: Optional[str]) -> str:
    return _segment.SHM_DIR if path is None else os.path.abspath(path)


def memory_buses(directory: str = _segment.SHM_DIR) -> List[str]:
    """The buses with a segment in ``directory`` (a marker or a topic's), sorted."""
    names = set()
    for seg in _segment.list_names(directory, _names.PREFIX + ":"):
        parsed = _names.parse_segment(seg)
        if parsed:
            names.add(parsed[0])
    return sorted(names)


def exit_status(command: str, e: BaseException) -> int:
    """Print ``e`` as the command's one line on stderr; the exit status."""
    print(f"shmbus {command}: {e}", file=sys.stderr)
    return 2 if isinstance(e, (Usage, InvalidNameError)) else 1


def open_bus(bus: str, path: Optional[str]) -> "Bus":
    """The bus, which must exist already (commands never create one)."""
    from .._bus import Bus
    try:
        return Bus(bus, path, create=False)
    except BusNotFoundError:
        where = "" if path is None else f" in {bus_directory(path)}"
        raise Failed(f"bus {bus!r} does not exist{where}") from None


def size_text(n: float) -> str:
    """Bytes for people: 512 B, 1.5 KiB, 64.0 MiB."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)
