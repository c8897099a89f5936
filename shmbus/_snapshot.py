"""A topic's live figures as a dict: one call into the C core
(``shmbus_topic_snapshot``), which reads the shared counters without locks and
never disturbs the bus.  ``Bus.stats`` returns this; ``shmbus stat``, ``top``
and ``export`` build on it."""
from typing import Any, Dict, List, Optional

from ._config import ACK, ORDERING, name_of
from ._core import check
from ._errors import CorruptSegmentError
from ._native import ffi, lib

PARTITION_COUNTERS = ("dropped_full", "dropped_oldest", "recovered_claims", "blocked_sends",
                      "discarded", "spilled", "spill_waiting", "spill_bytes", "spill_lost",
                      "duplicates", "dedup_evicted")
GROUP_COUNTERS = ("delivered", "acked", "redelivered", "dead_lettered", "lost", "pending",
                  "recovered_deliveries", "recovered_owners")


class Snapshotter:
    """Room for one topic's snapshot, allocated once and reused."""

    def __init__(self, handle: Any, partitions: int, capacity: int, slot_count: int, topic: str):
        self.handle = handle
        self.topic = topic
        self.capacity = capacity
        self.slot_count = slot_count
        n = partitions
        s = self.snap = ffi.new("struct shmbus_snapshot *")
        # the arrays live as long as this object: cffi frees them with it
        self._arrays = (
            ffi.new("struct shmbus_partition_stats[]", n),
            ffi.new("struct shmbus_group_info[]", lib.SHMBUS_MAX_GROUPS),
            ffi.new("struct shmbus_group_stats[]", lib.SHMBUS_MAX_GROUPS * n),
            ffi.new("struct shmbus_member_stats[]", lib.SHMBUS_MAX_MEMBERS),
            ffi.new("struct shmbus_producer_stats[]", lib.SHMBUS_MAX_PRODUCERS),
        )
        (s.partitions, s.groups, s.group_partitions, s.members, s.producers) = self._arrays

    def take(self) -> Dict[str, Any]:
        """The topic now: see :meth:`shmbus.Bus.stats` for the keys."""
        s = self.snap
        check(lib.shmbus_topic_snapshot(self.handle, s), f"topic {self.topic!r}")
        parts = [self._partition(i) for i in range(s.partition_count)]
        members = [self._member(i) for i in range(s.member_count)]
        groups = [self._group(k, parts, members) for k in range(s.group_count)]
        return {
            "taken_ns": s.taken_ns,
            "monotonic_ns": s.monotonic_ns,
            "partitions": parts,
            "groups": groups,
            "producers": [{"pid": p.pid, "start_time": p.start_time, "attached_ns": p.attached_ns}
                          for p in s.producers[0:s.producer_count]],
            "wakeups": s.wakeups,
            "sweeps": s.sweeps,
            "recovered_groups": s.recovered_groups,
        }

    def _partition(self, i: int) -> Dict[str, Any]:
        p = self.snap.partitions[i]
        used = p.tail_position - p.head_position
        # full when either the data region or the record index is
        fill = max(used / self.capacity, (p.tail_offset - p.head_offset) / self.slot_count)
        out = {"partition": i, "published": p.tail_offset, "oldest": p.head_offset,
               "bytes": p.tail_position, "bytes_in_use": used, "fill": min(1.0, fill)}
        out.update({k: getattr(p, k) for k in PARTITION_COUNTERS})
        return out

    def _member(self, i: int) -> Dict[str, Any]:
        m = self.snap.members[i]
        return {"entry": m.entry, "pid": m.pid, "start_time": m.start_time, "alive": bool(m.alive),
                "attached_ns": m.attached_ns, "last_active_ns": m.last_active_ns,
                "group_entry": m.group, "owned": m.owned, "pending": m.pending}

    def _group(self, k: int, parts: List[Dict[str, Any]],
               members: List[Dict[str, Any]]) -> Dict[str, Any]:
        s = self.snap
        info = s.groups[k]
        n = s.partition_count
        per = []
        for i in range(n):
            st = s.group_partitions[k * n + i]
            row = {"partition": i, "cursor": st.cursor, "committed": st.committed_offset,
                   "lag": parts[i]["published"] - st.committed_offset,
                   "owner": None if st.owner < 0 else st.owner}
            row.update({c: getattr(st, c) for c in GROUP_COUNTERS})
            per.append(row)
        private = bool(info.flags & lib.SHMBUS_GROUP_PRIVATE)
        try:
            name: Optional[str] = None if private else ffi.unpack(info.name, info.name_len).decode()
        except UnicodeDecodeError:
            raise CorruptSegmentError(
                f"topic {self.topic!r}: group entry {info.entry} has a malformed name") from None
        group = {
            "name": name,
            "entry": info.entry,
            "private": private,
            "tethered": bool(info.flags & lib.SHMBUS_GROUP_TETHERED),
            "ack": name_of(ACK, info.ack),
            "ordering": name_of(ORDERING, info.ordering),
            "live_members": info.members,
            "members": [m for m in members if m["group_entry"] == info.entry],
            "lag": sum(p["lag"] for p in per),
        }
        group.update({c: sum(p[c] for p in per) for c in GROUP_COUNTERS})
        group["partitions"] = per
        return group
