"""What ``stat``, ``top`` and ``export`` show: every topic of the buses asked
for, as ``Bus.stats`` gives it, with its configuration, rates from the
difference between two looks, and a health verdict.  The shape is the JSON of
``shmbus stat --json``, documented in the README; keep it stable."""
import os
import time
from typing import Any, Dict, List, Optional, Tuple

from .. import _reclaim, _segment
from .._bus import Bus
from .._errors import BusNotFoundError, ShmbusError, TopicNotFoundError
from ..bridge._common import BRIDGES_TOPIC, read_bridges
from .common import memory_buses

SCHEMA = 1
STALL_SECONDS = 5.0  # a live member that has not polled for this long, while its group lags
FULL = 0.9  # a partition this full under on_full="block" is about to hold producers back
DROP_COUNTERS = ("dropped_full", "dropped_oldest", "spill_lost")
GROUP_RATES = ("delivered", "acked", "redelivered", "dead_lettered")
# the kinds of problem health() reports, the most serious first
PROBLEMS = ("damaged", "dead_member", "dropping", "full", "no_member", "stalled",
            "dead_lettering", "redelivering")


class Watcher:
    """Buses opened once and looked at again and again.  ``buses`` None means
    every memory bus on the host, found again at each look."""

    def __init__(self, buses: Optional[List[str]] = None, path: Optional[str] = None,
                 topic: Optional[str] = None, stall_seconds: float = STALL_SECONDS):
        self.names = buses
        self.stall_seconds = stall_seconds
        self.path = None if path is None else os.path.abspath(path)
        self.topic = topic
        self.open: Dict[str, Bus] = {}
        self.last: Dict[Tuple[str, str], Dict[str, Any]] = {}
        self.gone: List[str] = []  # buses that were there at the last look and are not now
        self.bridge_readers: Dict[str, Tuple[Any, Dict[str, Any]]] = {}  # bus -> (consumer, reports)

    def look(self) -> Dict[str, Any]:
        """Every bus and topic now: ``{"schema", "taken_ns", "buses": {...}}``."""
        directory = _segment.SHM_DIR if self.path is None else self.path
        names = self.names if self.names is not None else memory_buses(directory)
        seen = {}
        for name in names:
            seen[name] = self._bus(name, directory)
        self.gone = [n for n in self.open if n not in seen or "error" in seen[n]]
        for n in self.gone:
            if n in self.bridge_readers:
                self.bridge_readers.pop(n)[0].close()
            self.open.pop(n).close()
        return {"schema": SCHEMA, "taken_ns": time.time_ns(), "buses": seen}

    def _bus(self, name: str, directory: str) -> Dict[str, Any]:
        bus = self.open.get(name)
        if bus is not None and not _reclaim.segments(directory, name):
            bus = None  # removed
        if bus is None:
            try:
                bus = Bus(name, self.path, create=False)
                bus._monitor = True
            except BusNotFoundError:
                return {"path": self.path, "error": f"bus {name!r} does not exist"}
            except (ShmbusError, OSError) as e:
                return {"path": self.path, "error": str(e)}
            self.open[name] = bus
        names = bus.topics()
        topics = [self.topic] if self.topic is not None else sorted(
            t for t in names if t != BRIDGES_TOPIC)
        out = {"path": self.path, "topics": {t: self._topic(bus, t) for t in topics}}
        if BRIDGES_TOPIC in names:
            out["bridges"] = self._bridges(bus)
        return out

    def _bridges(self, bus: Bus) -> List[Dict[str, Any]]:
        """The latest report of each bridge of the bus (see ``shmbus.bridge``)."""
        reader = self.bridge_readers.get(bus.name)
        if reader is None:
            try:
                reader = self.bridge_readers[bus.name] = (
                    bus.consumer(BRIDGES_TOPIC, start="earliest", tethered=False), {})
            except (ShmbusError, OSError):
                return []
        try:
            return read_bridges(*reader)
        except (ShmbusError, OSError):
            self.bridge_readers.pop(bus.name)[0].close()
            return []

    def _topic(self, bus: Bus, name: str) -> Dict[str, Any]:
        try:
            out: Dict[str, Any] = {"config": bus.topic_info(name)}
            out.update(bus.stats(name))
        except TopicNotFoundError as e:
            self.last.pop((bus.name, name), None)
            return {"missing": str(e), "health": _damaged(str(e))}
        except (ShmbusError, OSError) as e:  # damaged, or not ours to read
            self.last.pop((bus.name, name), None)
            return {"damaged": str(e), "health": _damaged(str(e))}
        before = self.last.get((bus.name, name))
        self.last[(bus.name, name)] = out
        out["rates"] = rates(before, out)
        _mark_members(out, self.stall_seconds)
        out["health"] = health(out)
        return out

    def close(self) -> None:
        for reader, _ in self.bridge_readers.values():
            reader.close()
        self.bridge_readers = {}
        for bus in self.open.values():
            bus.close()
        self.open = {}


def rates(before: Optional[Dict[str, Any]], now: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """Per second between two looks at a topic (None at the first look):
    ``{"seconds", "messages", "bytes", "dropped"}`` for the topic, and
    ``group["rates"]`` with ``delivered``, ``acked``, ``redelivered`` and
    ``dead_lettered`` per second for each group seen both times."""
    if before is None:
        return None
    dt = (now["monotonic_ns"] - before["monotonic_ns"]) / 1e9
    if dt <= 0:
        return None

    def per_second(key: str, parts_now: List[Dict[str, Any]], parts_before: List[Dict[str, Any]]) -> float:
        return max(0, sum(p[key] for p in parts_now) - sum(p[key] for p in parts_before)) / dt

    out = {"seconds": dt,
           "messages": per_second("published", now["partitions"], before["partitions"]),
           "bytes": per_second("bytes", now["partitions"], before["partitions"]),
           "dropped": sum(per_second(k, now["partitions"], before["partitions"])
                          for k in DROP_COUNTERS)}
    old = {(g["entry"], g["name"]): g for g in before["groups"]}
    for g in now["groups"]:
        b = old.get((g["entry"], g["name"]))
        if b is not None:
            g["rates"] = {k: max(0, g[k] - b[k]) / dt for k in GROUP_RATES}
    return out


def _mark_members(topic: Dict[str, Any], stall_seconds: float) -> None:
    """Each member gains ``idle_seconds`` (since its last poll or wait) and
    ``stalled``: alive, idle for ``stall_seconds`` or more while its group lags."""
    now = topic["taken_ns"]
    for g in topic["groups"]:
        for m in g["members"]:
            m["idle_seconds"] = max(0.0, (now - m["last_active_ns"]) / 1e9)
            m["stalled"] = m["alive"] and g["lag"] > 0 and m["idle_seconds"] >= stall_seconds


def health(topic: Dict[str, Any]) -> Dict[str, Any]:
    """``{"status": "ok" | "warning", "problems": [{"kind", "text"}]}``, kinds
    as in PROBLEMS, most serious first."""
    problems = []

    def problem(kind: str, text: str) -> None:
        problems.append({"kind": kind, "text": text})

    if topic["config"]["on_full"] == "block":
        for p in topic["partitions"]:
            if p["fill"] >= FULL:
                problem("full", f"partition {p['partition']} is {p['fill']:.0%} full: "
                                "producers will wait")
    r = topic["rates"]
    if r is not None and r["dropped"] > 0:
        problem("dropping", f"dropping {r['dropped']:.0f} messages/s")
    for g in topic["groups"]:
        label = "a private group" if g["private"] else f"group {g['name']!r}"
        if not g["private"] and g["lag"] > 0 and g["live_members"] == 0:
            problem("no_member", f"{label}: lag {g['lag']} and no live member")
        for m in g["members"]:
            if not m["alive"] and (m["pending"] or m["owned"]):
                problem("dead_member", f"{label}: member pid {m['pid']} died holding "
                                       f"{m['pending']} deliveries and {m['owned']} partitions "
                                       "(recovered at the next sweep)")
            elif m["stalled"]:
                problem("stalled", f"{label}: member pid {m['pid']} has not polled for "
                                   f"{m['idle_seconds']:.0f} s (lag {g['lag']})")
        gr = g.get("rates")
        if gr and gr["redelivered"] > 0:
            problem("redelivering", f"{label}: redelivering {gr['redelivered']:.0f} messages/s")
        if gr and gr["dead_lettered"] > 0:
            problem("dead_lettering",
                    f"{label}: dead-lettering {gr['dead_lettered']:.0f} messages/s")
    problems.sort(key=lambda p: PROBLEMS.index(p["kind"]))
    return {"status": "warning" if problems else "ok", "problems": problems}


def _damaged(text: str) -> Dict[str, Any]:
    return {"status": "damaged", "problems": [{"kind": "damaged", "text": text}]}
