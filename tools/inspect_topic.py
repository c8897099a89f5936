"""Print what a topic's segments hold: its stored configuration and live
per-partition figures.  A maintainer's tool; the operator's is ``shmbus stat``.

    python tools/inspect_topic.py BUS TOPIC [--path DIR]

With ``--path`` the bus is a disk bus in DIR; if no process has the topic open,
opening it recovers it first (its checksums are checked).
"""
import argparse
import json
import sys

import shmbus


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bus")
    ap.add_argument("topic")
    ap.add_argument("--path", default=None, help="the directory of a disk bus")
    args = ap.parse_args(argv)
    try:
        with shmbus.Bus(args.bus, path=args.path) as bus:
            report = {"config": bus.topic_info(args.topic), **bus.stats(args.topic)}
    except shmbus.ShmbusError as e:
        print(f"inspect_topic: {e}", file=sys.stderr)
        return 1
    json.dump(report, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
