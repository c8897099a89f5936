"""``shmbus gc``: remove the memory buses that no live process uses (every
process that had one open died, or left without removing it), and run the
recovery sweep over those in use.  Disk buses (``--path DIR``) are swept, never
removed: their files are their data.  ``--dry-run`` changes nothing.

``--json`` prints ``{"dry_run": bool, "removed": [{"bus", "topics", "bytes"}],
"in_use": {BUS: {"claims", "deliveries", "owners", "groups"}}}`` (under
``--dry-run``, ``removed`` lists what would go and ``in_use`` maps each bus to
``{}``).  A bus that is damaged is named on stderr and the exit status is 1."""
import argparse
import json
import os
import sys
from typing import Any, Dict, List, Optional

from .. import _names, _reclaim, _segment
from .._bus import Bus
from .._errors import BusNotFoundError, ShmbusError
from .common import Failed, memory_buses, size_text


def add_parser(sub: "argparse._SubParsersAction", name: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help="remove memory buses no live process uses; sweep the rest")
    p.add_argument("buses", nargs="*", metavar="BUS", help="only these memory buses (default: all)")
    p.add_argument("--dry-run", action="store_true", help="say what would be removed, change nothing")
    p.add_argument("--path", action="append", default=[], metavar="DIR",
                   help="also sweep the disk bus kept in DIR (repeatable; never removed)")
    p.add_argument("--json", action="store_true", help="print JSON only")
    return p


def run(args: argparse.Namespace) -> int:
    removed: List[Dict[str, Any]] = []
    in_use: Dict[str, Dict[str, int]] = {}
    failed = 0
    for name in args.buses:
        _names.check_name(name, "bus")
        if not _reclaim.segments(_segment.SHM_DIR, name):
            raise Failed(f"no memory bus {name!r}")
    for name in args.buses or memory_buses():
        try:
            c = _reclaim.claim(_segment.SHM_DIR, name)
        except ShmbusError as e:  # a segment it may not trust
            print(f"shmbus gc: bus {name!r}: {e}", file=sys.stderr)
            failed = 1
            continue
        if c is not None:
            if args.dry_run:
                c.release()
                names = _reclaim.segments(_segment.SHM_DIR, name)
                removed.append({"bus": name, "topics": _reclaim.topics(_segment.SHM_DIR, name),
                                "bytes": _reclaim.size(_segment.SHM_DIR, names)})
            else:
                removed.append(c.remove())
            continue
        failed |= _sweep(name, None, name, in_use, args.dry_run)
    for path in args.path:
        path = os.path.abspath(path)
        for name in _disk_buses(path):
            failed |= _sweep(name, path, f"{path}:{name}", in_use, args.dry_run)
    if args.json:
        print(json.dumps({"dry_run": args.dry_run, "removed": removed, "in_use": in_use},
                         indent=2, sort_keys=True))
    else:
        verb = "would remove" if args.dry_run else "removed"
        for r in removed:
            print(f"{verb} bus {r['bus']}: {len(r['topics'])} topic(s), {size_text(r['bytes'])}")
        for label, got in in_use.items():
            done = ", ".join(f"{v} {k}" for k, v in got.items() if v) or "nothing to recover"
            print(f"bus {label} is in use: {'not swept (dry run)' if args.dry_run else done}")
    return failed


def _sweep(name: str, path: Optional[str], label: str, out: Dict[str, Dict[str, int]],
           dry_run: bool) -> int:
    if dry_run:
        out[label] = {}
        return 0
    try:
        with Bus(name, path, create=False) as bus:
            out[label] = bus.sweep()
        return 0
    except BusNotFoundError:
        return 0  # removed meanwhile
    except ShmbusError as e:
        print(f"shmbus gc: bus {label!r}: {e}", file=sys.stderr)
        return 1


def _disk_buses(directory: str) -> List[str]:
    """The buses whose marker is in ``directory``."""
    return [n for n in memory_buses(directory) if _segment.exists(directory, _names.bus_segment(n))]
