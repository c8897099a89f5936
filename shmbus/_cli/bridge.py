"""``shmbus bridge out BUS/TOPIC URL`` and ``shmbus bridge in URL BUS/TOPIC``:
forward a topic to a distributed log, or a log to a topic, at least once, until
Ctrl-C (or ``--seconds S``).  URL: ``redis://HOST:PORT/STREAM`` (Redis Streams)
or ``nats://HOST:PORT/SUBJECT`` (NATS JetStream).  Prints what it forwarded,
and the connection's state, every ``--every`` seconds on stderr."""
import argparse
import sys
import time

from .common import Usage, add_path, open_bus, target


def add_parser(sub: "argparse._SubParsersAction", name: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help="forward a topic to Redis Streams or NATS JetStream, or back")
    p.add_argument("direction", choices=("out", "in"))
    p.add_argument("source", help="out: BUS/TOPIC; in: the URL")
    p.add_argument("destination", help="out: the URL; in: BUS/TOPIC")
    p.add_argument("--maxlen", type=int, default=None, help="Redis: cap the stream (approximately)")
    p.add_argument("--seconds", type=float, default=None, help="stop after this long (default: Ctrl-C)")
    p.add_argument("--every", type=float, default=5.0, help="seconds between reports (default 5)")
    add_path(p)
    return p


def run(args: argparse.Namespace) -> int:
    from ..bridge import NatsBridge, RedisBridge
    local, url = (args.source, args.destination) if args.direction == "out" else \
        (args.destination, args.source)
    bus_name, topic = target(local, topic_required=True)
    if url.startswith(("redis://", "rediss://")):
        make = lambda bus: RedisBridge(bus, topic, url, args.direction, maxlen=args.maxlen)  # noqa: E731
    elif url.startswith(("nats://", "tls://")):
        make = lambda bus: NatsBridge(bus, topic, url, args.direction)  # noqa: E731
    else:
        raise Usage(f"{url!r}: a bridge URL is redis://HOST:PORT/STREAM or nats://HOST:PORT/SUBJECT")
    with open_bus(bus_name, args.path) as bus:
        bridge = make(bus).start()
        end = None if args.seconds is None else time.monotonic() + args.seconds
        try:
            while True:
                left = None if end is None else end - time.monotonic()
                if left is not None and left <= 0:
                    break
                time.sleep(args.every if left is None else min(args.every, left))
                s = bridge.stats
                state = "connected" if s.connected else f"disconnected ({s.last_error})"
                print(f"shmbus bridge {args.direction}: {s.forwarded} forwarded, {state}, "
                      f"{s.reconnects} reconnects{', paused: topic full' if s.paused else ''}",
                      file=sys.stderr, flush=True)
        except KeyboardInterrupt:
            pass
        finally:
            bridge.close()
    return 0
