"""``shmbus tail BUS/TOPIC``: print a topic's messages as they arrive.

By default tail reads as an *untethered* private group: it never holds space in
the ring, so it never slows producers, even on an ``on_full="block"`` topic.  If
it falls so far behind that messages are overwritten before it reads them, it
skips ahead and says how many it missed on stderr.  With ``--group G`` it joins
the named group G as a member like any other (``ack="auto"``): it takes its share
of the messages, which the other members then do not get.

Output formats, one line per message, flushed as messages arrive:

- ``raw`` (default): the value's bytes, then a newline.
- ``json``: ``{"topic", "partition", "offset", "timestamp_ns", "key", "headers",
  "value"}``.  Bytes (the value, the key, a header value given as bytes) appear
  as a string when they are valid UTF-8, otherwise as ``{"base64": "..."}``; no
  key is ``null``.
- ``hex``: ``PARTITION OFFSET key=KEY`` and the value's bytes in hex; KEY is a
  JSON string when the key is printable UTF-8, ``0x...`` hex otherwise, ``null``
  when there is none.

tail follows until Ctrl-C (exit status 0, quietly), until ``-n N`` messages were
printed, or, with ``--timeout S``, until S seconds pass without a message.
"""
import argparse
import base64
import json
import os
import select
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Union

from .._bus import Bus
from .._errors import ConfigMismatchError, MessageReleasedError
from .._message import Message
from .common import Usage, add_path, open_bus, target

BATCH = 256  # messages fetched per call into the core
CHECK_EVERY = 0.5  # seconds between checks, while waiting, that stdout's reader is there


def add_parser(sub: "argparse._SubParsersAction", name: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help="print a topic's messages as they arrive",
                       description="Print a topic's messages as they arrive, until Ctrl-C. "
                       "By default tail never slows producers: it skips what it could not "
                       "read in time and says so on stderr.")
    p.add_argument("target", metavar="BUS/TOPIC")
    p.add_argument("--group", metavar="G", default=None,
                   help="join the named group G as a member (ack='auto'): tail then takes its "
                        "share of the messages away from G's other members, and like them "
                        "holds producers back")
    p.add_argument("--from", dest="start", choices=("earliest", "latest"), default="latest",
                   help="start at the oldest retained message or at the end (default: latest); "
                        "with --group, only for a group that does not exist yet")
    p.add_argument("-n", type=int, default=None, metavar="N", help="exit after N messages")
    p.add_argument("--format", choices=("raw", "json", "hex"), default="raw",
                   help="raw: the value and a newline (default); json: one object per line; "
                        "hex: partition, offset, key and the value in hex")
    p.add_argument("--timeout", type=float, default=None, metavar="S",
                   help="exit (status 0) after S seconds without a message")
    add_path(p)
    return p


def text(data: bytes) -> Union[str, Dict[str, str]]:
    """``data`` as a string if it is valid UTF-8, else as ``{"base64": ...}``."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(data).decode("ascii")}


def as_json(m: Message) -> bytes:
    key = m.key
    record = {
        "topic": m.topic, "partition": m.partition, "offset": m.offset,
        "timestamp_ns": m.timestamp,
        "key": None if key is None else text(key),
        "headers": {k: v if isinstance(v, str) else text(v) for k, v in m.headers.items()},
        "value": text(m.value),
    }
    return json.dumps(record, ensure_ascii=False).encode("utf-8") + b"\n"


def as_hex(m: Message) -> bytes:
    key, value = m.key, m.value
    if key is None:
        shown = "null"
    else:
        t = text(key)
        shown = json.dumps(t) if isinstance(t, str) and t.isprintable() else "0x" + key.hex()
    line = f"{m.partition} {m.offset} key={shown}"
    return (line + (" " + value.hex(" ") if value else "") + "\n").encode("utf-8")


def as_raw(m: Message) -> bytes:
    return m.value + b"\n"


FORMATS: Dict[str, Callable[[Message], bytes]] = {"raw": as_raw, "json": as_json, "hex": as_hex}


def _consumer(bus: Bus, topic: str, args: argparse.Namespace) -> Any:
    if args.group is None:
        return bus.consumer(topic, tethered=False, start=args.start)
    # join the group as it was made: its ordering, and tethered or not
    existing = [g for g in bus.stats(topic)["groups"] if g["name"] == args.group]
    ordering = existing[0]["ordering"] if existing else "partition"
    try:
        return bus.consumer(topic, group=args.group, start=args.start, ordering=ordering)
    except ConfigMismatchError:
        if not existing:
            raise
        return bus.consumer(topic, group=args.group, start=args.start, ordering=ordering,
                            tethered=False)


def _note_lost(lost: int) -> None:
    if lost:
        print(f"shmbus tail: {lost} message{'s were' if lost != 1 else ' was'} overwritten "
              "before they could be read", file=sys.stderr, flush=True)


def reader_gone(fd: int) -> bool:
    """Whether ``fd`` is a pipe whose reading end was closed (``| head`` exited)."""
    p = select.poll()
    p.register(fd, 0)  # POLLERR and POLLHUP are always reported
    return any(ev & (select.POLLERR | select.POLLHUP) for _, ev in p.poll(0))


def follow(c: Any, fmt: Callable[[Message], bytes], limit: Optional[int],
           idle: Optional[float]) -> None:
    """Print messages until ``limit`` were printed or ``idle`` seconds pass without one."""
    out = sys.stdout.buffer
    printed = 0
    deadline = None if idle is None else time.monotonic() + idle
    while limit is None or printed < limit:
        want = BATCH if limit is None else min(BATCH, limit - printed)
        wait = CHECK_EVERY if deadline is None else min(CHECK_EVERY, deadline - time.monotonic())
        msgs: List[Message] = c.poll_batch(want, timeout=max(0.0, wait))
        if not msgs:
            if deadline is not None and time.monotonic() >= deadline:
                return
            if reader_gone(out.fileno()):
                raise BrokenPipeError
            continue
        lost = 0
        chunks = []
        for m in msgs:
            lost += m.lost_before
            try:
                chunks.append(fmt(m))
            except MessageReleasedError:  # overwritten between the poll and the read
                lost += 1
        if lost:
            out.flush()
            _note_lost(lost)
        out.write(b"".join(chunks))
        out.flush()
        printed += len(chunks)
        if idle is not None:
            deadline = time.monotonic() + idle


def run(args: argparse.Namespace) -> int:
    bus_name, topic = target(args.target, topic_required=True)
    if args.n is not None and args.n < 1:
        raise Usage("-n must be at least 1")
    if args.timeout is not None and args.timeout <= 0:
        raise Usage("--timeout must be more than 0 seconds")
    try:
        with open_bus(bus_name, args.path) as bus, _consumer(bus, topic, args) as c:
            follow(c, FORMATS[args.format], args.n, args.timeout)
    except KeyboardInterrupt:  # Ctrl-C is how tail is meant to end
        return 0
    except BrokenPipeError:  # the reader went away (| head): nothing more to say
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so that the exit's flush does not fail
        return 0
    return 0
