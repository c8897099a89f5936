"""``shmbus pub BUS/TOPIC``: publish one message per line of stdin.

Each line, without its trailing newline, is sent as bytes, with ``--key`` and
``--header`` if given, under the topic's own ``on_full`` policy (so under
``block`` pub waits for room).  It stops at the first line that cannot be
published (too large, a full topic under ``error``, a drop under
``drop_newest``) with exit status 1 and one line on stderr that says how many
lines were published before.  The bus and the topic must exist.
"""
import argparse
import sys
from typing import Dict, List, Optional

from .._errors import BusFull, MessageTooLargeError
from .common import Failed, Usage, add_path, open_bus, target


def add_parser(sub: "argparse._SubParsersAction", name: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help="publish one message per line of stdin",
                       description="Publish one message per line of stdin (the line without "
                       "its newline), under the topic's on_full policy.")
    p.add_argument("target", metavar="BUS/TOPIC")
    p.add_argument("--key", metavar="K", default=None, help="the key of every message")
    p.add_argument("--header", metavar="K=V", action="append", default=[],
                   help="a header of every message (repeatable)")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="print the partition and offset of each message")
    add_path(p)
    return p


def headers_of(items: List[str]) -> Optional[Dict[str, str]]:
    """``["K=V", ...]`` as a dict; None when there are none."""
    out = {}
    for item in items:
        k, sep, v = item.partition("=")
        if not sep or not k:
            raise Usage(f"--header {item!r}: write it as KEY=VALUE")
        out[k] = v
    return out or None


def _published(n: int) -> str:
    return f"{n} line{'s were' if n != 1 else ' was'} published before"


def run(args: argparse.Namespace) -> int:
    bus_name, topic = target(args.target, topic_required=True)
    headers = headers_of(args.header)
    sent = 0
    with open_bus(bus_name, args.path) as bus, bus.producer(topic) as p:
        try:
            for line in sys.stdin.buffer:
                value = line[:-1] if line.endswith(b"\n") else line
                try:
                    off = p.send(value, key=args.key, headers=headers)
                except (MessageTooLargeError, BusFull) as e:
                    raise Failed(f"line {sent + 1}: {e}; {_published(sent)}") from None
                if off is None:
                    raise Failed(f"line {sent + 1} was dropped: topic {topic!r} is full "
                                 f"(on_full={p.on_full}); {_published(sent)}")
                sent += 1
                if args.verbose:
                    shown = "spilled" if off.offset is None else off.offset
                    print(off.partition, shown, flush=True)
        except KeyboardInterrupt:
            print(f"shmbus pub: interrupted; {_published(sent)}", file=sys.stderr)
            return 130
    return 0
