"""``shmbus gc``: the recovery sweep over every topic of every bus on the host
(memory buses in /dev/shm, and disk buses named with ``--path``)."""
import argparse
import json
import os
import sys
from typing import Dict, List, Optional

from .. import _names, _segment
from .._bus import Bus
from .._errors import ShmbusError


def bus_names(directory: str) -> List[str]:
    """The buses whose marker segment is in ``directory``."""
    out = []
    for seg in _segment.list_names(directory, _names.PREFIX + ":"):
        parsed = _names.parse_segment(seg)
        if parsed and parsed[1] is None:
            out.append(parsed[0])
    return out


def add_parser(sub: "argparse._SubParsersAction", name: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help="recover what dead processes left in every bus on this host")
    p.add_argument("--path", action="append", default=[], metavar="DIR",
                   help="also a disk bus kept in DIR (repeatable)")
    p.add_argument("--json", action="store_true", help="print JSON only")
    return p


def run(args: argparse.Namespace) -> int:
    paths, as_json = args.path, args.json
    found: Dict[str, Dict[str, int]] = {}
    failed = 0
    where: List[Optional[str]] = [None] + [os.path.abspath(p) for p in paths]
    for path in where:
        for name in bus_names(_segment.SHM_DIR if path is None else path):
            label = name if path is None else f"{path}:{name}"
            try:
                with Bus(name, path) as bus:
                    found[label] = bus.sweep()
            except ShmbusError as e:
                print(f"shmbus gc: bus {label!r}: {e}", file=sys.stderr)
                failed = 1
    if as_json:
        print(json.dumps({"buses": found}, indent=2, sort_keys=True))
    else:
        for label, got in found.items():
            done = ", ".join(f"{v} {k}" for k, v in got.items() if v) or "nothing to recover"
            print(f"{label}: {done}")
    return failed
