"""Bus: a named namespace of topics, in shared memory or in a directory on disk."""
import os
from typing import Any, Dict, List, Optional

from . import _dead_letter, _names, _paths, _segment, _spill
from ._config import FSYNC, ON_FULL, RETENTION, name_of, seconds, topic_config
from ._consumer import SPIN, Consumer
from ._core import check
from ._errors import (BusNotFoundError, ClosedError, ConfigError, ConfigMismatchError,
                      CorruptSegmentError, GroupNotFoundError, TopicExistsError, TopicNotFoundError)
from ._native import ffi, lib
from ._producer import Producer
from ._topic import SWEEP_FIELDS, TopicMap, close_fd, remove_segments, take_over

_UNSET: Any = type("Default", (), {"__repr__": lambda self: "<default>"})()


class Bus:
    """A named set of topics, shared by every process on the host that opens it.

    ``Bus(name)`` validates the name, then opens the bus, creating it if needed
    (``create=False``: BusNotFoundError if it does not exist).  While it is
    open, and while a producer or consumer of one of its topics is, the bus is
    in use: ``shmbus gc`` removes only buses that no live process uses.
    ``Bus(name, path=directory)`` keeps the bus in files in that directory
    (created if missing; its parent must exist): the same layout, mapped the
    same way, so it survives a restart of the machine.  Each topic's ``fsync``
    says what a returned send promises there:

    - ``"never"``: the send is in the page cache; it survives the crash of any
      process, not of the machine.  ``flush()`` puts it on disk.
    - ``"batch"``: as never, and a producer syncs a partition when its last sync
      of it is more than 100 ms old, at ``flush()`` and at ``close()``: a crash
      of the machine loses at most the sends of the last 100 ms (plus those of a
      producer that stopped sending without flush or close).
    - ``"always"``: the send returns once the record is on disk (one fdatasync
      per send or send_many call).

    Every record on disk carries a CRC-32C checksum.  The first process to open
    a disk topic after every process that had it open is gone recovers it:
    records are kept from the oldest to the last good one, an incomplete tail
    is dropped (logged on the ``shmbus`` logger and counted in ``stats``), and a
    damaged record followed by good ones raises CorruptSegmentError naming its
    partition and offset.  Groups' committed offsets are in the same files.
    ``close()`` (or leaving a ``with`` block) detaches this process and removes
    nothing; ``delete_topic`` and ``unlink`` remove segments.  A process that dies is
    noticed by the others within ``liveness_timeout`` seconds.
    """

    def __init__(self, name: str, path: Optional[str] = None, *, liveness_timeout: float = 1.0,
                 create: bool = True):
        self.name = _names.check_name(name, "bus")
        self.path = None if path is None else _paths.directory(path, "bus path")
        self._dir = _segment.SHM_DIR if self.path is None else self.path
        lt = seconds(liveness_timeout, "liveness_timeout", allow_none=False)
        self._liveness_ns = max(1_000_000, int(lt * 1e9))
        self._maps: Dict[str, TopicMap] = {}
        self._closed = False
        self._marker_fd = -1
        # shmbus stat, top and export look without the recovery sweep on attach:
        # they show what dead processes left until a user of the topic recovers it
        self._monitor = False
        self._open_marker(create)

    def _open_marker(self, create: bool) -> None:
        """Open (or make) the bus's marker segment and hold its open lock for the
        bus's life; a marker that ``shmbus gc`` removed meanwhile is made again."""
        name = _names.bus_segment(self.name)
        size = lib.shmbus_bus_size()
        while True:
            try:
                if not create:
                    raise FileExistsError
                seg = _segment.Segment.create(self._dir, name, size, 0o600)
                check(lib.shmbus_bus_init(seg.ptr, seg.size))
            except FileExistsError:
                try:
                    seg = _segment.Segment.open(self._dir, name, size)
                except FileNotFoundError:  # removed meanwhile: make it again
                    if not create:
                        raise BusNotFoundError(f"bus {self.name!r} does not exist") from None
                    continue
                r = lib.shmbus_bus_check(seg.ptr, seg.size)
                if r == lib.SHMBUS_EVERSION:
                    found = lib.shmbus_segment_version(seg.ptr, seg.size)
                    seg.close()
                    raise CorruptSegmentError(
                        f"bus {self.name!r} has layout version {found}; this shmbus reads "
                        f"version {lib.SHMBUS_LAYOUT_VERSION}")
                if r not in (lib.SHMBUS_OK, lib.SHMBUS_ENOTREADY):
                    seg.close()
                    check(r, f"bus {self.name!r}")
            try:
                _segment.hold_open(seg.fd, f"bus {self.name!r}")
                if seg.is_current():
                    self._marker_fd = os.dup(seg.fd)  # the lock lives on with this copy
                    return
            finally:
                seg.close()

    def _check_open(self) -> None:
        if self._closed:
            raise ClosedError(f"bus {self.name!r} is closed")

    # -- topics --------------------------------------------------------------------

    def create_topic(self, name: str, partitions: int = _UNSET, capacity: int = _UNSET,
                     max_message_size: int = _UNSET, on_full: str = _UNSET,
                     retention: str = _UNSET, retention_bytes: Optional[int] = _UNSET,
                     retention_seconds: Optional[float] = _UNSET, fsync: str = _UNSET,
                     dedup_window: float = _UNSET, spill_dir: Optional[str] = _UNSET,
                     spill_bytes: int = _UNSET, mode: int = _UNSET,
                     max_messages: Optional[int] = _UNSET, dedup_capacity: int = _UNSET,
                     exist_ok: bool = False) -> None:
        """Create a topic.  Defaults: partitions=1, capacity=64 MiB of data per
        partition (rounded up to a power of two), max_message_size=1 MiB,
        on_full="block", retention="consumed", mode=0o600, max_messages (records a
        partition holds at most, exact: a send beyond it waits or is refused as
        ``on_full`` says, as when the bytes run out) = capacity / 256, rounded up to
        a power of two.

        Sends with a ``msg_id`` are deduplicated per partition: an id is
        remembered for ``dedup_window`` seconds (default 600), in a table of
        ``dedup_capacity`` ids per partition (default 16384, 32 bytes each,
        rounded up to buckets of ten); a new id that finds its bucket full
        pushes out the bucket's oldest id (counted as ``dedup_evicted``), so
        size the table for the ids one window brings.  ``dedup_capacity=0``
        keeps no table, and sends with a ``msg_id`` are refused.

        Raises TopicExistsError if it exists, unless ``exist_ok``: then the options
        this call gives explicitly must match the existing topic's
        (ConfigMismatchError otherwise)."""
        self._check_open()
        _names.check_name(name, "topic")
        given = {k: v for k, v in dict(
            partitions=partitions, capacity=capacity, max_message_size=max_message_size,
            on_full=on_full, retention=retention, retention_bytes=retention_bytes,
            retention_seconds=retention_seconds, fsync=fsync, dedup_window=dedup_window,
            spill_dir=spill_dir, spill_bytes=spill_bytes, mode=mode, max_messages=max_messages,
            dedup_capacity=dedup_capacity,
        ).items() if v is not _UNSET}
        c = topic_config(given)
        spill_dir = _spill.directory(c["spill_dir"]) if c["on_full"] == "spill" else ""
        if self.path is None and c["fsync"] != "never":
            raise ConfigError(f"fsync={c['fsync']!r} is for disk buses (Bus(name, path=...)); "
                              f"bus {self.name!r} is in memory")
        meta_name = _names.meta_segment(self.name, name)
        while True:
            try:
                meta = _segment.Segment.create(self._dir, meta_name, lib.shmbus_meta_size(),
                                               c["mode"], creating=True)
            except FileExistsError:
                if take_over(self._dir, self.name, name):
                    continue  # gone meanwhile, or left unfinished by a creator that died
                if not exist_ok:
                    raise TopicExistsError(f"topic {name!r} exists on bus {self.name!r}") from None
                return self._compare(name, given, c)
            if meta.is_current():
                break
            meta.close()  # taken over between making the file and locking it: again
        try:
            for i in range(c["partitions"]):
                seg = _segment.Segment.create(
                    self._dir, _names.partition_segment(self.name, name, i),
                    lib.shmbus_partition_size(c["capacity"], c["slot_count"], c["dedup_capacity"]),
                    c["mode"])
                try:
                    check(lib.shmbus_partition_init(seg.ptr, seg.size, i, c["capacity"], c["slot_count"],
                                                    c["dedup_capacity"]))
                    if self.path is not None:
                        os.fsync(seg.fd)
                finally:
                    seg.close()
            info = ffi.new("struct shmbus_topic_info *", dict(
                partitions=c["partitions"], on_full=ON_FULL[c["on_full"]],
                retention=RETENTION[c["retention"]], fsync=FSYNC[c["fsync"]],
                capacity=c["capacity"], slot_count=c["slot_count"], max_messages=c["max_messages"],
                max_message_size=c["max_message_size"],
                retention_bytes=c["retention_bytes"] or 0,
                retention_ns=int((c["retention_seconds"] or 0) * 1e9),
                dedup_window_ns=int(c["dedup_window"] * 1e9), dedup_capacity=c["dedup_capacity"],
                mode=c["mode"],
                flags=0 if self.path is None else lib.SHMBUS_TOPIC_CHECKSUMS,
                spill_bytes=c["spill_bytes"] or 0, spill_dir=os.fsencode(spill_dir)))
            check(lib.shmbus_meta_init(meta.ptr, meta.size, info))  # the topic is ready from here
            lib.shmbus_create_end(meta.fd)
            if self.path is not None:  # on disk before create_topic returns, names included
                os.fsync(meta.fd)
                _paths.sync_directory(self.path)
        except BaseException:
            meta.close()
            remove_segments(self._dir, self.name, name)
            raise
        meta.close()

    def _compare(self, name: str, given: Dict[str, Any], wanted: Dict[str, Any]) -> None:
        stored = self.topic_info(name)
        for k in given:
            if k in stored and stored[k] != wanted[k]:
                raise ConfigMismatchError(
                    f"topic {name!r} exists with {k}={stored[k]!r}, not {wanted[k]!r}")

    def topics(self) -> List[str]:
        """Names of this bus's topics."""
        self._check_open()
        return self._topic_names()

    def _topic_names(self) -> List[str]:
        out = []
        for seg in _segment.list_names(self._dir, _names.bus_segment(self.name) + ":"):
            parsed = _names.parse_segment(seg)
            if parsed and parsed[0] == self.name and parsed[2] == "meta":
                out.append(parsed[1])
        return out

    def topic_info(self, name: str) -> Dict[str, Any]:
        """A topic's configuration as stored (capacity as rounded, and so on), with
        create_topic's option names, plus ``layout_version`` and ``created_ns``."""
        m = self._map(name)
        try:
            i = m.info
        finally:
            m.release()
        return {
            "partitions": i["partitions"], "capacity": i["capacity"],
            "max_message_size": i["max_message_size"], "max_messages": i["max_messages"],
            "on_full": name_of(ON_FULL, i["on_full"]),
            "retention": name_of(RETENTION, i["retention"]),
            "retention_bytes": i["retention_bytes"] or None,
            "retention_seconds": i["retention_ns"] / 1e9 or None,
            "fsync": name_of(FSYNC, i["fsync"]), "dedup_window": i["dedup_window_ns"] / 1e9,
            "dedup_capacity": i["dedup_capacity"],
            "spill_dir": i["spill_dir"] or None,
            "spill_bytes": i["spill_bytes"] if i["on_full"] == lib.SHMBUS_ON_FULL_SPILL else None,
            "mode": i["mode"], "layout_version": i["layout_version"], "created_ns": i["created_ns"],
        }

    def stats(self, name: str) -> Dict[str, Any]:
        """Live figures of a topic, read from shared memory in one call that takes
        no lock and never disturbs the bus::

            {"taken_ns", "monotonic_ns",
             "partitions": [{"partition", "published", "oldest", "bytes",
                             "bytes_in_use", "fill", "dropped_full", "dropped_oldest",
                             "recovered_claims", "blocked_sends", "discarded", "spilled",
                             "spill_waiting", "spill_bytes", "spill_lost", "duplicates",
                             "dedup_evicted"}, ...],
             "groups": [{"name", "entry", "private", "tethered", "ack", "ordering",
                         "live_members", "members": [member, ...], "lag", "delivered",
                         "acked", "redelivered", "dead_lettered", "lost", "pending",
                         "recovered_deliveries", "recovered_owners",
                         "partitions": [{"partition", "cursor", "committed", "lag",
                                         "owner", "delivered", "acked", ...}, ...]}, ...],
             "producers": [{"pid", "start_time", "attached_ns"}, ...],
             "wakeups", "sweeps", "recovered_groups"}

        member: ``{"entry", "pid", "start_time", "alive", "attached_ns",
        "last_active_ns", "group_entry", "owned", "pending"}``.  ``published`` is
        the partition's end offset and ``bytes`` the bytes published (records with
        their overhead); ``oldest`` the first offset still held for some group;
        ``fill`` the share of the capacity in use (of the data region's bytes or of
        the record index's entries, whichever is fuller).  A group's ``name`` is None for
        a consumer's private group; ``owner`` is the member entry that owns the
        partition under ``ordering="partition"`` (None when nobody does).  Under
        ``ack="auto"`` ``acked`` counts released messages and ``pending`` those
        handed out and not yet released.  Members are the live ones and the dead
        that never left their group (``alive`` False); ``last_active_ns`` is the
        member's last poll or wait; producers are the live ones.  Counters only
        grow; the figures agree with each other (no lag is negative)."""
        m = self._map(name)
        try:
            return m.snapshotter().take()
        finally:
            m.release()

    def sweep(self, topic: Optional[str] = None) -> Dict[str, int]:
        """Run the recovery sweep over ``topic`` (every topic of the bus if None)
        and return what it recovered::

            {"claims", "deliveries", "owners", "groups"}

        claims: dead producers' unfinished sends, turned into padding that
        readers skip; deliveries: messages held by dead members, released to be
        delivered again (ack="manual") or done (ack="auto"); owners: partitions
        a dead member owned under ordering="partition", released to the live
        members; groups: private groups of dead consumers (and groups a process
        died creating), ended so they hold no space.

        The sweep also runs when a process maps a topic, when a wait for
        messages or for room times out, and from ``shmbus gc``; without it, the
        same recoveries happen lazily within the liveness timeout.  Sweeps are
        idempotent and safe to run at once from several processes: each
        recovery happens (and is counted in ``stats``) exactly once."""
        self._check_open()
        names = self._topic_names() if topic is None else [topic]
        total = dict.fromkeys(SWEEP_FIELDS, 0)
        for name in names:
            try:
                m = self._map(name)
            except TopicNotFoundError:
                if topic is not None:
                    raise
                continue  # removed meanwhile
            try:
                # the sweep this process ran when it mapped the topic, not reported before
                first, m.attach_sweep = m.attach_sweep, dict.fromkeys(SWEEP_FIELDS, 0)
                for k, v in m.sweep().items():
                    total[k] += v + first[k]
            finally:
                m.release()
        return total

    def delete_group(self, topic: str, group: str) -> None:
        """Remove a named group of ``topic``: its position and pending messages go,
        and it no longer holds producers back.  A group with live members raises
        ShmbusError (close them first); a missing group raises LookupError."""
        _names.check_name(group, "group")
        m = self._map(topic)
        fd = m.lock_fd()
        try:
            raw = group.encode()
            r = lib.shmbus_group_delete(m.handle, fd, raw, len(raw))
            if r == lib.SHMBUS_EMPTY:
                raise GroupNotFoundError(f"topic {topic!r} has no group {group!r}")
            check(r, f"delete_group {group!r} of {topic!r}")
        finally:
            close_fd(fd)
            m.release()

    def delete_topic(self, name: str) -> None:
        """Remove the topic's segments.  Processes attached keep their mappings
        until they close; a new topic of the same name is a new topic."""
        self._check_open()
        _names.check_name(name, "topic")
        if not _segment.exists(self._dir, _names.meta_segment(self.name, name)):
            raise TopicNotFoundError(f"topic {name!r} does not exist on bus {self.name!r}")
        remove_segments(self._dir, self.name, name)
        m = self._maps.pop(name, None)
        if m is not None:
            m.release()

    def unlink(self) -> None:
        """Remove the whole bus: every topic and the bus itself (also after close)."""
        for t in self._topic_names():
            remove_segments(self._dir, self.name, t)
        for seg in list(_segment.list_names(self._dir, _names.bus_segment(self.name) + ":")):
            _segment.unlink(self._dir, seg)
        _segment.unlink(self._dir, _names.bus_segment(self.name))
        if self.path is not None:
            try:
                os.rmdir(self.path)  # the bus's own directory, if nothing else is in it
            except OSError:
                pass

    # -- handles -------------------------------------------------------------------

    def _map(self, topic: str) -> TopicMap:
        """A reference to the topic's mapping (the caller releases it)."""
        self._check_open()
        _names.check_name(topic, "topic")
        m = self._maps.get(topic)
        if m is not None:
            if m.is_current():
                return m.acquire()
            self._maps.pop(topic).release()  # removed: let its mapping go
        m = TopicMap(self._dir, self.name, topic, self._liveness_ns, disk=self.path is not None,
                     sweep=not self._monitor)
        self._maps[topic] = m.acquire()
        return m

    def producer(self, topic: str, *, on_full: Optional[str] = None,
                 timeout: Optional[float] = None) -> Producer:
        """A producer for ``topic`` (TopicNotFoundError if missing).  ``on_full`` and
        ``timeout`` override the topic's policy for this producer."""
        m = self._map(topic)
        try:
            return Producer(m, on_full, timeout)
        finally:
            m.release()

    def consumer(self, topic: str, group: Optional[str] = None, *, ack: str = "auto",
                 ordering: str = "partition", start: str = "latest", ack_timeout: float = 30.0,
                 max_deliveries: Optional[int] = None, dead_letter: Optional[str] = None,
                 tethered: bool = True, spin: float = SPIN) -> Consumer:
        """A consumer of ``topic`` (TopicNotFoundError if missing).  ``spin`` is how
        long (seconds) a waiting poll spins before it sleeps."""
        if group is not None:
            _names.check_name(group, "group")
        if dead_letter is not None:
            _names.check_name(dead_letter, "topic")
        m = self._map(topic)
        try:
            return Consumer(m, group, ack, ordering, start, ack_timeout, max_deliveries,
                            dead_letter, tethered, spin,
                            lambda name: _dead_letter.open_producer(self, name))
        finally:
            m.release()

    # -- lifetime ------------------------------------------------------------------

    def close(self) -> None:
        """Detach this process's view of the bus; removes nothing.  Producers and
        consumers made from it keep working until they are closed."""
        if self._closed:
            return
        self._closed = True
        close_fd(self._marker_fd)
        self._marker_fd = -1
        maps, self._maps = self._maps, {}
        for m in maps.values():
            m.release()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> "Bus":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __reduce__(self) -> Any:
        """A bus pickles by name: a child process given one opens the same bus."""
        return (_reopen, (self.name, self.path, self._liveness_ns / 1e9))

    def __repr__(self) -> str:
        return f"Bus({self.name!r})" if self.path is None else f"Bus({self.name!r}, path={self.path!r})"


def _reopen(name: str, path: Optional[str], liveness_timeout: float) -> Bus:
    return Bus(name, path, liveness_timeout=liveness_timeout)
