"""The ``shmbus`` command line."""
import argparse
import sys
from typing import List, Optional

from . import __version__


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="shmbus", description="A message bus for processes on one host.")
    ap.add_argument("--version", action="version", version=f"shmbus {__version__}")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")
    demo = sub.add_parser("demo", help="producers, a worker group, subscribers and live figures")
    demo.add_argument("--producers", type=int, default=2)
    demo.add_argument("--workers", type=int, default=2, help="members of the worker group")
    demo.add_argument("--subscribers", type=int, default=2)
    demo.add_argument("--seconds", type=float, default=5.0, help="how long the producers publish")
    gc = sub.add_parser("gc", help="recover what dead processes left in every bus on this host")
    gc.add_argument("--path", action="append", default=[], metavar="DIR",
                    help="also a disk bus kept in DIR (repeatable)")
    gc.add_argument("--json", action="store_true", help="print JSON only")
    return ap


def main(argv: Optional[List[str]] = None) -> int:
    ap = _parser()
    args = ap.parse_args(argv)
    if args.command is None:
        ap.print_usage(sys.stderr)
        return 2
    if args.command == "demo":
        if args.producers < 1 or args.subscribers < 0 or args.workers < 0 or args.seconds <= 0:
            ap.error("--producers must be >= 1, --workers and --subscribers >= 0, --seconds > 0")
        if args.subscribers + args.workers == 0:
            ap.error("the demo needs a worker or a subscriber")
        from . import _demo
        return _demo.run(args.producers, args.subscribers, args.workers, args.seconds)
    if args.command == "gc":
        from . import _gc
        return _gc.run(args.path, args.json)
    return 2


if __name__ == "__main__":
    sys.exit(main())
