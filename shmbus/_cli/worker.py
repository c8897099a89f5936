"""``shmbus worker module:function --bus B --topic T --group G -c 4``: run a handler
over a topic in a pool of processes, the members of one group (manual acks: a
message is acked when the handler returns; when it raises, the default
``Retrying`` chooses a delayed redelivery or the dead letters).  The current
directory is importable, as for ``python -m``.  Runs until Ctrl-C, or for
``--seconds S``; a member that dies is replaced."""
import argparse
import os
import sys

from .._handling import load_handler
from .._names import check_name
from .._worker import Worker
from .common import Usage, add_path, open_bus


def add_parser(sub: "argparse._SubParsersAction", name: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help="run module:function over a topic in a pool of processes")
    p.add_argument("handler", metavar="MODULE:FUNCTION", help="called with each message")
    p.add_argument("--bus", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--group", required=True)
    p.add_argument("-c", "--concurrency", type=int, default=1, metavar="N", help="processes (default 1)")
    p.add_argument("--ordering", choices=("none", "partition"), default="none")
    p.add_argument("--max-deliveries", type=int, default=None, metavar="N")
    p.add_argument("--dead-letter", default=None, metavar="TOPIC")
    p.add_argument("--seconds", type=float, default=None, help="stop after this long (default: Ctrl-C)")
    add_path(p)
    return p


def run(args: argparse.Namespace) -> int:
    for value, kind in ((args.bus, "bus"), (args.topic, "topic"), (args.group, "group")):
        check_name(value, kind)
    if args.concurrency < 1:
        raise Usage(f"-c must be >= 1, got {args.concurrency}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # spawned members get this sys.path too
    load_handler(args.handler)
    open_bus(args.bus, args.path).close()  # an existing bus: a worker never creates one
    w = Worker(args.bus, args.topic, args.group, args.handler, args.concurrency, path=args.path,
               ordering=args.ordering, max_deliveries=args.max_deliveries,
               dead_letter=args.dead_letter)
    print(f"shmbus worker: {args.concurrency} process(es) running {args.handler} on "
          f"{args.bus}/{args.topic} as group {args.group!r}; Ctrl-C stops", file=sys.stderr)
    w.run(args.seconds)
    return 0
