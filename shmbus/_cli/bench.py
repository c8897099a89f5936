"""``shmbus bench``: the side-by-side benchmark suite (shmbus beside
multiprocessing, faster-fifo, pyzmq, posix_ipc, iceoryx2), run from a source
checkout: the suite lives in the checkout's ``benchmarks/`` directory, next to
the package, and is not installed with it."""
import argparse
import sys
from pathlib import Path
from typing import List

from .common import Failed


def add_parser(sub: "argparse._SubParsersAction", name: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help="shmbus beside other IPC libraries (needs a source checkout)")
    p.add_argument("--quick", action="store_true", help="fewer workloads, one short repetition")
    p.add_argument("--vs", metavar="LIBS", help="comma-separated peers (default: all)")
    p.add_argument("--reps", type=int, help="repetitions (default 3; --quick 1)")
    p.add_argument("--only", metavar="WORKLOADS", help="comma-separated workloads")
    p.add_argument("--json", metavar="F", help="write the results here")
    p.add_argument("--plot", metavar="F.png", help="draw the plots here")
    p.add_argument("--suite-dir", default=None, help=argparse.SUPPRESS)  # for tests
    return p


def suite_dir() -> Path:
    """Where a source checkout keeps the suite: ``benchmarks/`` beside the package."""
    import shmbus
    return Path(shmbus.__file__).resolve().parents[1] / "benchmarks"


def run(args: argparse.Namespace) -> int:
    where = Path(args.suite_dir) if args.suite_dir else suite_dir()
    if not (where / "suite.py").is_file():
        raise Failed(f"needs a source checkout: the suite lives in benchmarks/ "
                     f"(no {where / 'suite.py'})")
    sys.path.insert(0, str(where))
    import suite
    argv: List[str] = ["--quick"] if args.quick else []
    for flag in ("vs", "reps", "only", "json", "plot"):
        value = getattr(args, flag)
        if value is not None:
            argv += [f"--{flag}", str(value)]
    return suite.main(argv, prog="shmbus bench")
