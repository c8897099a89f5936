"""``shmbus demo``: see :mod:`shmbus._demo`."""
import argparse

from .common import Usage


def add_parser(sub: "argparse._SubParsersAction", name: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help="producers, a worker group, subscribers and live figures")
    p.add_argument("--producers", type=int, default=2)
    p.add_argument("--workers", type=int, default=2, help="members of the worker group")
    p.add_argument("--subscribers", type=int, default=2)
    p.add_argument("--seconds", type=float, default=5.0, help="how long the producers publish")
    return p


def run(args: argparse.Namespace) -> int:
    if args.producers < 1 or args.subscribers < 0 or args.workers < 0 or args.seconds <= 0:
        raise Usage("--producers must be >= 1, --workers and --subscribers >= 0, --seconds > 0")
    if args.subscribers + args.workers == 0:
        raise Usage("the demo needs a worker or a subscriber")
    from .. import _demo
    return _demo.run(args.producers, args.subscribers, args.workers, args.seconds)

