"""``shmbus rm BUS[/TOPIC]``: remove a bus (every topic, then the bus) or one
topic.  A bus or topic that a live process has open is left alone unless
``--force`` is given: then it is removed anyway, and the processes attached keep
their mappings until they close (their later opens find it gone).  A missing
bus or topic is a failure (exit 1)."""
import argparse
import os

from .. import _names, _reclaim
from .common import Failed, add_path, bus_directory, target


def add_parser(sub: "argparse._SubParsersAction", name: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help="remove a bus or a topic")
    p.add_argument("target", metavar="BUS[/TOPIC]")
    p.add_argument("--force", action="store_true", help="remove it even while processes use it")
    add_path(p)
    return p


def run(args: argparse.Namespace) -> int:
    bus, topic = target(args.target)
    directory = bus_directory(args.path)
    names = _reclaim.segments(directory, bus)
    if topic is not None:
        if _names.meta_segment(bus, topic) not in names:
            raise Failed(f"topic {topic!r} does not exist on bus {bus!r}")
    elif not names:
        raise Failed(f"bus {bus!r} does not exist" + (f" in {directory}" if args.path else ""))
    what = f"topic {topic!r} of bus {bus!r}" if topic is not None else f"bus {bus!r}"
    c = _reclaim.claim(directory, bus, topic)
    if c is None:
        if not args.force:
            raise Failed(f"{what} is in use by a live process; --force removes it anyway")
        c = _reclaim.Claim(directory, bus, topic)
    c.remove()
    if args.path is not None and topic is None:
        try:
            os.rmdir(directory)  # the bus's own directory, if nothing else is in it
        except OSError:
            pass
    return 0
