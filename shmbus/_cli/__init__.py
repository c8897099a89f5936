"""The ``shmbus`` command line: one module per command, each with ``add_parser``
(its options) and ``run`` (returns the exit status: 0 ok, 1 a failed operation,
2 bad usage)."""
import argparse
import importlib
import sys
from typing import List, Optional

from .. import __version__
from .._errors import ShmbusError
from .common import Failed, Usage, exit_status

# command name -> module of this package
COMMANDS = {
    "ls": "ls",
    "stat": "stat",
    "top": "top",
    "tail": "tail",
    "pub": "pub",
    "rm": "rm",
    "gc": "gc",
    "export": "export",
    "demo": "demo",
    "bench": "bench",
    "worker": "worker",
    "bridge": "bridge",
}


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="shmbus", description="A message bus for processes on one host.")
    ap.add_argument("--version", action="version", version=f"shmbus {__version__}")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in COMMANDS.items():
        try:
            mod = importlib.import_module(f".{module}", __name__)
        except ModuleNotFoundError as e:
            if e.name == f"{__name__}.{module}":  # not written yet
                continue
            raise
        p = mod.add_parser(sub, name)
        p.set_defaults(run=mod.run)
    return ap


def main(argv: Optional[List[str]] = None) -> int:
    ap = _parser()
    args = ap.parse_args(argv)
    if args.command is None:
        ap.print_usage(sys.stderr)
        return 2
    try:
        return args.run(args)
    except BrokenPipeError:  # the reader of our output went away (| head)
        sys.stderr.close()
        return 0
    except (Failed, Usage, ShmbusError, OSError) as e:
        return exit_status(args.command, e)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
