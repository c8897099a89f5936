"""Chaos soak: producers, a fan-out subscriber and manual-ack groups run on one
topic while participants are SIGKILLed and restarted, or SIGSTOPped for a while;
afterwards a history checker proves what the bus promises.

    PYTHONPATH=. python tools/chaos_soak.py [--seconds 60] [--producers 3]
        [--members 2] [--partitions 4] [--ordering none|partition|both]
        [--retention consumed|log] [--capacity BYTES] [--seed S] [--bus NAME]
        [--json PATH] [--keep-records]

Exit status 0 when every check holds, 1 otherwise (2 on bad usage).

Participants (each a process of the multiprocessing spawn context)
- producers (``--producers N``): each incarnation of producer slot i gets a new
  *stream* id and sends seq 0, 1, 2, ... with key ``b"s<stream>"`` (so one stream
  lands on one partition), with ``send`` and ``send_many`` batches (1..64) of
  random length payloads: ``<stream u32, seq u32, length u32, crc32 u32>`` then
  the body (a slice of a random pool, 0..2 KiB, sometimes up to 16 KiB); the
  crc covers the first 12 header bytes and the body.  After a send returns the
  producer stores the stream's count of returned sends in a shared RawArray
  slot (one writer per slot, an aligned 8-byte store).  A SIGKILL between the
  return and the store only makes the checker's claim weaker by that batch: the
  checker demands what the slot says, never more.
- the fan-out subscriber: the only member of named group ``fanout``
  (``ack="manual"``, ``ordering="partition"``, tethered); it checks each payload
  (crc, length, key), appends one record per message to its own file with
  ``os.write`` (data in the page cache survives a SIGKILL of the writer), and
  only then acks.  A restart joins the same group and resumes from its
  committed point (the groups are created by the runner before anything is sent,
  and never deleted).  So nothing may be lost, and a duplicate may only be a
  re-delivery (``delivery_count > 1``) after a kill of the incarnation that had
  recorded but not acked it.
- the work group(s): ``--members M`` members of group ``work-none``
  (``ordering="none"``) and/or ``work-partition`` (``ordering="partition"``),
  ``ack="manual"``; batches of 1, 7 or 50; they record like the subscriber, then
  ack, nacking the last message of 2% of the batches (after recording it).
- chaos, from the runner (the parent): every 0.15..0.9 s, with probability 0.65,
  SIGKILL one random participant that has finished starting and start a
  replacement of the same role; otherwise SIGSTOP one for 0.2..3 s (at most two
  stopped at once), then SIGCONT.  Each participant keeps its current step in a
  RawArray byte (idle, send, poll, record, ack, nack), read just before a kill:
  the summary counts kills by role and by step, which shows that kills land
  mid-send and mid-ack.  The ring is small (``--capacity``, 32 KiB by default)
  so producers spend most of their time blocked in ``send``.

No multiprocessing Event/Lock/Queue is used between processes: a process killed
while holding such a lock hangs everyone.  Coordination is by RawValue/RawArray
flags and by files; every wait has a timeout.

End: the producers are told to stop (joined with a timeout, then killed), every
stopped participant is continued, the consumers drain until every group has lag
0 and nothing pending (deadline 20 s), then stop; the records are read and checked.

The checker (numpy over the records of every consumer incarnation):
1. no torn payload: every delivered payload has its crc, length and key right;
   and one (partition, offset) always carries the same (stream, seq), each
   stream on one partition; no delivery reports ``lost_before``.
2. no loss: for every stream, every seq below its returned count was processed
   by the subscriber and by every work group (tethered groups acknowledge
   everything before the drain completes).
3. per-producer order at the subscriber: within one subscriber incarnation a
   stream's seqs strictly increase, with no gap below the returned count, and
   each partition's offsets strictly increase.  In a work group with
   ``ordering="partition"``: taking the records of a stream by the time they
   were processed, no seq is processed before every smaller one was processed
   at least once (re-processing after a kill or nack is allowed).
4. duplicates only as at-least-once allows: a (partition, offset) has at most
   one record with ``delivery_count == 1`` in a group; the subscriber never sees
   a message twice in one incarnation, and its duplicates number at most one
   batch (256) per subscriber kill.
5. the groups drained (lag 0, pending 0) and each group's ``acked`` counter lies
   between its distinct messages minus one batch per kill of its members (a
   member killed between completing a batch and counting it) and published.
6. no participant exited on its own with a non-zero status; the bus's segments
   are gone from /dev/shm after the run.

The summary reports messages moved (published, and deliveries recorded), kills
by role and by step, stops, duplicates, VmRSS at start and end of the runner and
of each participant that was never killed, and /dev/shm entries (count, and the
names starting with ``shmbus:``) at start and end.  The bus is removed at the
end, also on failure and on Ctrl-C/SIGTERM.

This replaces tools/soak_groups.py: ``--producers 1 --ordering both`` with
``--retention log`` covers its checks (at-least-once, the acked counter, per-key
order under ``ordering="partition"``, members killed at random).
"""
import argparse
import json
import multiprocessing as mp
import os
import random
import shutil
import signal
import struct
import sys
import tempfile
import time
import traceback
import uuid
import zlib

import numpy as np

import shmbus

HDR = struct.Struct("<IIII")            # stream, seq, body length, crc32
REC = struct.Struct("<IIQQHHB")          # stream, seq, offset, t_ns, partition, dcount, flags
REC_DTYPE = np.dtype([("stream", "<u4"), ("seq", "<u4"), ("offset", "<u8"), ("t", "<u8"),
                      ("part", "<u2"), ("dcount", "<u2"), ("flags", "u1")])
assert REC_DTYPE.itemsize == REC.size
F_CRC, F_KEY, F_LOST = 1, 2, 4           # record flags: crc ok, key ok, lost_before != 0
MAX_STREAMS = 1 << 16                    # producer incarnations
MAX_PROCS = 1 << 17                      # participant incarnations
SUB_BATCH = 256
MEMBER_BATCHES = (1, 7, 50)
STEPS = ("idle", "send", "poll", "record", "ack", "nack", "starting")
IDLE, SEND, POLL, RECORD, ACK, NACK, STARTING = range(7)
TOPIC = "work"
LIVENESS = 1.0
ACK_TIMEOUT = 30.0                       # longer than any SIGSTOP: no redelivery to a stopped member


def group_names(ordering):
    return {"none": ["work-none"], "partition": ["work-partition"],
            "both": ["work-none", "work-partition"]}[ordering]


# -- participants ----------------------------------------------------------------

def producer(bus_name, procid, stream, seed, returned, stop, ready, step):
    rng = random.Random(seed)
    pool = os.urandom(1 << 17)
    key = b"s%d" % stream
    seq = 0

    def payload(s):
        n = rng.randrange(16385) if rng.random() < 0.02 else rng.randrange(2049)
        o = rng.randrange(len(pool) - n + 1)
        body = pool[o:o + n]
        head = struct.pack("<III", stream, s, n)
        return head + struct.pack("<I", zlib.crc32(body, zlib.crc32(head))) + body

    with shmbus.Bus(bus_name, liveness_timeout=LIVENESS) as bus, \
            bus.producer(TOPIC, timeout=60.0) as p:
        ready[procid] = 1
        while not stop.value:
            n = rng.choice((1, 1, 1, 8, 64))
            if n == 1:
                v = payload(seq)
                step[procid] = SEND
                p.send(v, key=key)
                seq += 1
            else:
                vs = [payload(seq + i) for i in range(n)]
                step[procid] = SEND
                try:
                    p.send_many(vs, key=key)
                    seq += n
                except shmbus.BusFull as e:  # only after 60 s blocked: counted as a stall below
                    seq += e.accepted
                    returned[stream] = seq
                    raise
            step[procid] = IDLE
            returned[stream] = seq


def consumer(role, bus_name, group, ordering, procid, seed, path, stop, ready, step):
    """The subscriber (role "sub") or a work group member (role "member")."""
    rng = random.Random(seed)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    pack = REC.pack
    crc32 = zlib.crc32
    unpack = HDR.unpack_from
    batches = (SUB_BATCH,) if role == "sub" else MEMBER_BATCHES
    with shmbus.Bus(bus_name, liveness_timeout=LIVENESS) as bus, \
            bus.consumer(TOPIC, group=group, ack="manual", ordering=ordering, start="earliest",
                         ack_timeout=ACK_TIMEOUT) as c:
        ready[procid] = 1
        while not stop.value:
            step[procid] = POLL
            msgs = c.poll_batch(rng.choice(batches), timeout=0.05)
            if not msgs:
                step[procid] = IDLE
                continue
            t = time.monotonic_ns()
            out = []
            for m in msgs:
                v = m.view()
                flags = 0
                if len(v) >= 16:
                    stream, seq, n, crc = unpack(v)
                    if n == len(v) - 16 and crc32(v[16:], crc32(v[:12])) == crc:
                        flags |= F_CRC
                    if m.key == b"s%d" % stream:
                        flags |= F_KEY
                else:
                    stream = seq = 0xFFFFFFFF
                if m.lost_before:
                    flags |= F_LOST
                out.append(pack(stream & 0xFFFFFFFF, seq & 0xFFFFFFFF, m.offset, t, m.partition,
                                min(m.delivery_count, 0xFFFF), flags))
            step[procid] = RECORD
            data = b"".join(out)
            while data:
                data = data[os.write(fd, data):]
            if role == "member" and rng.random() < 0.02:
                step[procid] = NACK
                c.nack(msgs[-1])
                msgs = msgs[:-1]
            step[procid] = ACK
            if msgs:
                c.ack(msgs)
            step[procid] = IDLE
    os.close(fd)


def run_participant(kind, *args):
    try:
        if kind == "producer":
            producer(*args)
        else:
            consumer(kind, *args)
    except KeyboardInterrupt:
        sys.exit(3)
    except BaseException:
        traceback.print_exc()
        sys.stderr.flush()
        sys.exit(4)


# -- the runner ------------------------------------------------------------------

def rss_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def shm_entries():
    try:
        names = os.listdir("/dev/shm")
    except FileNotFoundError:
        names = []
    return {"count": len(names), "shmbus": sorted(n for n in names if n.startswith("shmbus:"))}


class Participant:
    __slots__ = ("kind", "slot", "group", "procid", "stream", "proc", "started", "path",
                 "rss_start", "killed", "stopped_until")

    def __init__(self, kind, slot, group, procid, stream, proc, path):
        self.kind, self.slot, self.group, self.procid = kind, slot, group, procid
        self.stream, self.proc, self.path = stream, proc, path
        self.started = time.monotonic()
        self.rss_start = None
        self.killed = False
        self.stopped_until = None

    @property
    def label(self):
        return f"{self.kind}[{self.slot}]" + (f"@{self.group}" if self.kind == "member" else "") \
            + f"#{self.procid}"


class Runner:
    def __init__(self, args):
        self.args = args
        self.rng = random.Random(args.seed)
        self.ctx = mp.get_context("spawn")
        self.bus_name = args.bus
        self.groups = group_names(args.ordering)
        self.returned = self.ctx.RawArray("Q", MAX_STREAMS)
        self.ready = self.ctx.RawArray("b", MAX_PROCS)
        self.step = self.ctx.RawArray("b", MAX_PROCS)
        self.stop_producers = self.ctx.RawValue("b", 0)
        self.stop_consumers = self.ctx.RawValue("b", 0)
        self.records = tempfile.mkdtemp(prefix="chaos-soak-")
        self.all = []            # every participant incarnation
        self.live = []           # current incarnations (maybe stopped)
        self.next_procid = 0
        self.next_stream = 0
        self.stream_owner = {}   # stream -> producer slot
        self.kills = {}          # role -> count
        self.kill_steps = {}     # step -> count
        self.member_kills = {}   # group -> count
        self.stops = 0
        self.problems = []
        self.notes = []

    # participants
    def start(self, kind, slot, group=None):
        procid = self.next_procid
        self.next_procid += 1
        self.step[procid] = STARTING
        seed = self.rng.randrange(2**63)
        path = None
        stream = None
        if kind == "producer":
            if self.next_stream >= MAX_STREAMS:
                raise RuntimeError("out of stream ids")
            stream = self.next_stream
            self.next_stream += 1
            self.stream_owner[stream] = slot
            args = (self.bus_name, procid, stream, seed, self.returned, self.stop_producers,
                    self.ready, self.step)
        else:
            path = os.path.join(self.records, f"{group}.{procid}.rec")
            ordering = "partition" if group in ("fanout", "work-partition") else "none"
            args = (self.bus_name, group, ordering, procid, seed, path, self.stop_consumers,
                    self.ready, self.step)
        proc = self.ctx.Process(target=run_participant, args=(kind,) + args, daemon=True,
                                name=f"chaos-{kind}-{procid}")
        proc.start()
        p = Participant(kind, slot, group, procid, stream, proc, path)
        self.all.append(p)
        self.live.append(p)
        return p

    def kill(self, p):
        self.kill_steps[STEPS[self.step[p.procid]]] = self.kill_steps.get(STEPS[self.step[p.procid]], 0) + 1
        try:
            os.kill(p.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.proc.join(10)
        p.killed = True
        p.stopped_until = None
        self.kills[p.kind] = self.kills.get(p.kind, 0) + 1
        if p.kind == "member":
            self.member_kills[p.group] = self.member_kills.get(p.group, 0) + 1
        self.live.remove(p)
        if p.proc.exitcode is None:
            self.problems.append(f"{p.label} did not die within 10 s of SIGKILL")
        return self.start(p.kind, p.slot, p.group)

    def chaos_step(self):
        ready = [p for p in self.live if self.ready[p.procid] and p.proc.is_alive()]
        if not ready:
            return
        victim = self.rng.choice(ready)
        if self.rng.random() < 0.65:
            if victim.kind == "producer" and self.next_stream >= MAX_STREAMS - 1:
                return
            self.kill(victim)
        elif victim.stopped_until is None and \
                sum(p.stopped_until is not None for p in self.live) < 2:
            os.kill(victim.proc.pid, signal.SIGSTOP)
            victim.stopped_until = time.monotonic() + self.rng.uniform(0.2, 3.0)
            self.stops += 1

    def continue_due(self, everyone=False):
        now = time.monotonic()
        for p in self.live:
            if p.stopped_until is not None and (everyone or now >= p.stopped_until):
                try:
                    os.kill(p.proc.pid, signal.SIGCONT)
                except ProcessLookupError:
                    pass
                p.stopped_until = None

    def note_exits(self):
        """Participants that died without being killed: a problem (they are not replaced)."""
        for p in list(self.live):
            if not p.proc.is_alive() and p.proc.exitcode is not None:
                told = self.stop_producers.value if p.kind == "producer" else self.stop_consumers.value
                if told and p.proc.exitcode == 0:
                    continue
                self.problems.append(f"{p.label} exited on its own with status {p.proc.exitcode}")
                self.live.remove(p)

    def sample_rss(self):
        for p in self.live:
            if p.rss_start is None and self.ready[p.procid] and not p.killed:
                p.rss_start = rss_kb(p.proc.pid)

    def groups_drained(self, bus):
        st = bus.stats(TOPIC)
        out = {}
        for g in st["groups"]:
            if g["name"] in ["fanout"] + self.groups:
                out[g["name"]] = g
        return st, out

    def run(self):
        a = self.args
        t0 = time.monotonic()
        summary = {"seed": a.seed, "bus": self.bus_name, "seconds": a.seconds,
                   "producers": a.producers, "members": a.members, "partitions": a.partitions,
                   "ordering": a.ordering, "retention": a.retention, "capacity": a.capacity,
                   "shm_start": shm_entries(), "runner_rss_start_kb": rss_kb(os.getpid())}
        bus = shmbus.Bus(self.bus_name, liveness_timeout=LIVENESS)
        if bus.topics():  # not ours: leave it alone
            bus.close()
            raise SystemExit(f"bus {self.bus_name!r} already has topics; use a new --bus")
        try:
            bus.create_topic(TOPIC, partitions=a.partitions, capacity=a.capacity,
                             max_message_size=1 << 15, retention=a.retention)
            for g in ["fanout"] + self.groups:  # named groups exist before the first send
                bus.consumer(TOPIC, group=g, ack="manual",
                             ordering="none" if g == "work-none" else "partition",
                             start="earliest", ack_timeout=ACK_TIMEOUT).close()
            self.start("sub", 0, "fanout")
            for g in self.groups:
                for i in range(a.members):
                    self.start("member", i, g)
            for i in range(a.producers):
                self.start("producer", i)
            self.initial = self.next_procid
            end = t0 + a.seconds
            next_chaos = time.monotonic() + 2.0
            while time.monotonic() < end:
                time.sleep(0.02)
                self.sample_rss()
                self.continue_due()
                self.note_exits()
                if time.monotonic() >= next_chaos:
                    self.chaos_step()
                    next_chaos = time.monotonic() + self.rng.uniform(0.15, 0.9)
            self.sample_rss()
            # the long-lived ones: started at the beginning and never killed
            summary["rss_kb"] = {p.label: {"start": p.rss_start, "end": rss_kb(p.proc.pid)}
                                 for p in self.live if p.procid < self.initial}
            summary["runner_rss_end_kb"] = rss_kb(os.getpid())
            # stop: producers first, then drain
            self.continue_due(everyone=True)
            self.stop_producers.value = 1
            for p in self.live:
                if p.kind == "producer":
                    p.proc.join(max(0.1, 15 - (time.monotonic() - end)))
                    if p.proc.is_alive():
                        self.problems.append(f"{p.label} did not stop within 15 s (a send blocked)")
            self.note_exits()
            deadline = time.monotonic() + 20
            while True:
                st, gs = self.groups_drained(bus)
                if all(g["lag"] == 0 and g["pending"] == 0 for g in gs.values()) \
                        or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            summary["drain_s"] = round(time.monotonic() - end, 2)
            self.stop_consumers.value = 1
            for p in self.live:
                p.proc.join(max(0.1, deadline + 5 - time.monotonic()))
            self.note_exits()
            for name, g in gs.items():
                if g["lag"] or g["pending"]:
                    self.problems.append(f"group {name} did not drain within 20 s: lag {g['lag']}, "
                                         f"pending {g['pending']}")
            summary["published"] = sum(p["published"] for p in st["partitions"])
            summary["partition_stats"] = st["partitions"]
            summary["group_stats"] = {n: {k: g[k] for k in ("delivered", "acked", "redelivered",
                                                              "dead_lettered", "lag", "pending")}
                                      for n, g in gs.items()}
            summary["stop_s"] = round(time.monotonic() - end, 2)
            tc = time.monotonic()
            self.check(summary, st, gs)
            summary["check_s"] = round(time.monotonic() - tc, 2)
        finally:
            for p in self.live:
                if p.proc.is_alive():
                    try:
                        os.kill(p.proc.pid, signal.SIGCONT)
                    except ProcessLookupError:
                        pass
                    p.proc.kill()
                p.proc.join(5)
            bus.unlink()
            bus.close()
            left = [n for n in shm_entries()["shmbus"] if n.startswith(f"shmbus:{self.bus_name}")]
            if left:
                self.problems.append(f"segments of the bus left in /dev/shm: {left}")
            if self.problems and a.keep_records is None:
                a.keep_records = True
            if not a.keep_records:
                shutil.rmtree(self.records, ignore_errors=True)
        summary["shm_end"] = shm_entries()
        summary["kills"] = dict(self.kills)
        summary["kills_total"] = sum(self.kills.values())
        summary["kill_steps"] = dict(self.kill_steps)
        summary["stops"] = self.stops
        summary["streams"] = self.next_stream
        summary["problems"] = self.problems
        summary["notes"] = self.notes
        summary["records_dir"] = self.records if a.keep_records else None
        summary["wall_s"] = round(time.monotonic() - t0, 1)
        return summary

    # -- the checker -------------------------------------------------------------

    def load(self, group):
        parts, procs = [], []
        partial = 0
        for p in self.all:
            if p.group != group or p.path is None or not os.path.exists(p.path):
                continue
            raw = np.fromfile(p.path, dtype=np.uint8)
            n = len(raw) // REC_DTYPE.itemsize
            if len(raw) % REC_DTYPE.itemsize:
                partial += 1
                if not p.killed:
                    self.problems.append(f"{p.label}: a partial record but it was not killed")
            parts.append(raw[:n * REC_DTYPE.itemsize].view(REC_DTYPE))
            procs.append(np.full(n, p.procid, dtype=np.uint32))
        if not parts:
            return np.zeros(0, REC_DTYPE), np.zeros(0, np.uint32), partial
        return np.concatenate(parts), np.concatenate(procs), partial

    def check(self, summary, st, gs):
        returned = np.frombuffer(self.returned, dtype=np.uint64)[:self.next_stream].astype(np.int64)
        summary["returned_sends"] = int(returned.sum())
        per_group = {}
        pos_key_all, msg_all = [], []
        for group in ["fanout"] + self.groups:
            r, procs, partial = self.load(group)
            info = {"records": int(len(r)), "partial_records": partial}
            per_group[group] = info
            bad = np.count_nonzero((r["flags"] & (F_CRC | F_KEY)) != (F_CRC | F_KEY))
            if bad:
                self.problems.append(f"{group}: {bad} torn or misrouted payloads (crc/length/key)")
            lost = np.count_nonzero(r["flags"] & F_LOST)
            if lost:
                self.problems.append(f"{group}: {lost} deliveries report lost_before (tethered)")
            good = (r["flags"] & F_CRC) != 0
            r, procs = r[good], procs[good]
            if r["stream"].size and int(r["stream"].max()) >= self.next_stream:
                self.problems.append(f"{group}: a record names a stream never started")
                known = r["stream"] < self.next_stream
                r, procs = r[known], procs[known]
            pos = (r["part"].astype(np.uint64) << np.uint64(48)) | r["offset"]
            msg = (r["stream"].astype(np.uint64) << np.uint64(32)) | r["seq"].astype(np.uint64)
            pos_key_all.append(pos)
            msg_all.append(msg)
            upos = np.unique(pos)
            info["distinct"] = int(len(upos))
            info["duplicates"] = int(len(r) - len(upos))
            # no loss: every returned send processed
            umsg = np.unique(msg)
            s = (umsg >> np.uint64(32)).astype(np.int64)
            q = (umsg & np.uint64(0xFFFFFFFF)).astype(np.int64)
            covered = np.count_nonzero(q < returned[s]) if len(umsg) else 0
            if covered != int(returned.sum()):
                have = np.bincount(s[q < returned[s]], minlength=self.next_stream)
                short = [(int(i), int(returned[i] - have[i])) for i in
                         np.nonzero(have < returned)[0]]
                self.problems.append(f"{group}: {int(returned.sum()) - covered} returned sends never "
                                     f"processed; (stream, missing): {short[:8]}")
            # at most one first delivery of each message
            first = np.sort(pos[r["dcount"] == 1])
            dup_first = np.count_nonzero(first[1:] == first[:-1])
            if dup_first:
                self.problems.append(f"{group}: {dup_first} messages delivered twice with "
                                     f"delivery_count 1")
            if group == "fanout":
                self.check_subscriber(r, procs, returned, info)
            elif group == "work-partition":
                self.check_partition_order(r, returned)
            # acked counter
            g = gs.get(group)
            if g is not None:
                kills = self.kills.get("sub", 0) if group == "fanout" else self.member_kills.get(group, 0)
                batch = SUB_BATCH if group == "fanout" else max(MEMBER_BATCHES)
                lo = len(upos) - batch * kills
                if not lo <= g["acked"] <= summary["published"]:
                    self.problems.append(f"{group}: acked {g['acked']} outside [{lo}, "
                                         f"{summary['published']}] ({kills} kills)")
        # one position, one message; one stream, one partition
        pos = np.concatenate(pos_key_all)
        msg = np.concatenate(msg_all)
        order = np.lexsort((msg, pos))
        pos, msg = pos[order], msg[order]
        clash = np.count_nonzero((pos[1:] == pos[:-1]) & (msg[1:] != msg[:-1]))
        if clash:
            self.problems.append(f"{clash} positions (partition, offset) carry two different messages")
        stream = (msg >> np.uint64(32))
        part = (pos >> np.uint64(48))
        sp = np.unique((stream << np.uint64(16)) | part)
        multi = np.count_nonzero(np.diff((sp >> np.uint64(16)).astype(np.int64)) == 0)
        if multi:
            self.problems.append(f"{multi} streams seen on more than one partition")
        # published offsets no group processed (claims recovered from killed producers)
        published = sum(p["published"] for p in st["partitions"])
        seen = len(np.unique(pos))
        summary["published_unseen"] = int(published - seen)
        summary["recovered_claims"] = sum(p["recovered_claims"] for p in st["partitions"])
        summary["discarded"] = sum(p["discarded"] for p in st["partitions"])
        summary["groups"] = per_group
        summary["deliveries_recorded"] = sum(i["records"] for i in per_group.values())
        summary["duplicates"] = {g: i["duplicates"] for g, i in per_group.items()}

    def check_subscriber(self, r, procs, returned, info):
        if not len(r):
            return
        idx = np.arange(len(r))
        # per incarnation and stream, in the order recorded: seq strictly increases,
        # and no gap below the returned count
        o = np.lexsort((idx, r["stream"], procs))
        rs, pr = r[o], procs[o]
        same = (pr[1:] == pr[:-1]) & (rs["stream"][1:] == rs["stream"][:-1])
        s0 = rs["seq"][:-1].astype(np.int64)
        s1 = rs["seq"][1:].astype(np.int64)
        back = np.count_nonzero(same & (s1 <= s0))
        if back:
            self.problems.append(f"fanout: {back} times a stream's seq did not increase within "
                                 f"one subscriber incarnation")
        ret = returned[rs["stream"][:-1].astype(np.int64)]
        gap = np.count_nonzero(same & (s1 != s0 + 1) & (s0 + 1 < ret))
        if gap:
            self.problems.append(f"fanout: {gap} gaps below the returned count within one "
                                 f"subscriber incarnation")
        info["gaps_past_returned"] = int(np.count_nonzero(same & (s1 > s0 + 1) & (s0 + 1 >= ret)))
        o = np.lexsort((idx, r["part"], procs))
        rp, pr = r[o], procs[o]
        same = (pr[1:] == pr[:-1]) & (rp["part"][1:] == rp["part"][:-1])
        back = np.count_nonzero(same & (rp["offset"][1:] <= rp["offset"][:-1]))
        if back:
            self.problems.append(f"fanout: {back} times a partition's offset did not increase "
                                 f"within one subscriber incarnation")
        kills = self.kills.get("sub", 0)
        if info["duplicates"] > SUB_BATCH * kills:
            self.problems.append(f"fanout: {info['duplicates']} duplicates, more than one batch "
                                 f"for each of {kills} subscriber kills")
        if np.count_nonzero(r["dcount"] > 1) < info["duplicates"]:
            self.problems.append("fanout: fewer redeliveries than duplicates")

    def check_partition_order(self, r, returned):
        """Per stream, by processing time: no seq before every smaller one was
        processed at least once (only seqs below the returned count)."""
        keep = r["seq"].astype(np.int64) < returned[r["stream"].astype(np.int64)]
        r = r[keep]
        if not len(r):
            return
        o = np.lexsort((r["seq"], r["t"], r["stream"]))
        r = r[o]
        key = (r["stream"].astype(np.int64) << 32) | r["seq"].astype(np.int64)
        cmax = np.maximum.accumulate(key)
        prev = np.empty_like(cmax)
        prev[1:] = cmax[:-1]
        prev[0] = -1
        start = np.ones(len(r), bool)
        start[1:] = r["stream"][1:] != r["stream"][:-1]
        prev_seq = np.where(start, -1, prev - (r["stream"].astype(np.int64) << 32))
        early = np.nonzero(r["seq"].astype(np.int64) > prev_seq + 1)[0]
        if len(early):
            i = early[0]
            self.problems.append(f"work-partition: {len(early)} times a seq processed before a "
                                 f"smaller one, first stream {int(r['stream'][i])} seq "
                                 f"{int(r['seq'][i])} after at most {int(prev_seq[i])}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=60.0, help="chaos phase (default 60)")
    ap.add_argument("--producers", type=int, default=3)
    ap.add_argument("--members", type=int, default=2, help="members of each work group")
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--ordering", choices=("none", "partition", "both"), default="both",
                    help="work group ordering; both: one group of each")
    ap.add_argument("--retention", choices=("consumed", "log"), default="consumed")
    ap.add_argument("--capacity", type=int, default=1 << 15, help="bytes per partition")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--bus", default=None, help="bus name (default chaos-<pid>-<random>)")
    ap.add_argument("--json", default=None, help="write the summary here as JSON")
    ap.add_argument("--keep-records", action="store_true", default=None,
                    help="keep the record files (kept anyway when a check fails)")
    args = ap.parse_args(argv)
    if args.producers < 1 or args.members < 1 or args.partitions < 1:
        ap.error("--producers, --members and --partitions must be >= 1")
    if args.seed is None:
        args.seed = random.randrange(2**32)
    if args.bus is None:
        args.bus = f"chaos-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    print(f"chaos soak: seed {args.seed}, bus {args.bus}, {args.seconds:g} s", flush=True)

    def on_term(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)
    runner = Runner(args)
    summary = runner.run()
    report(summary)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=1, default=str)
    return 1 if summary["problems"] else 0


def report(s):
    print(f"published {s.get('published')} messages ({s.get('returned_sends')} sends returned, "
          f"{s.get('streams')} producer incarnations); deliveries recorded "
          f"{s.get('deliveries_recorded')}; wall {s['wall_s']} s (drain {s.get('drain_s')} s, "
          f"stop {s.get('stop_s')} s, check {s.get('check_s')} s)")
    print(f"kills {s['kills_total']} {s['kills']}, at step {s['kill_steps']}; stops {s['stops']}")
    print(f"duplicates {s.get('duplicates')}; published but never processed (recovered claims) "
          f"{s.get('published_unseen')} (recovered_claims {s.get('recovered_claims')}, "
          f"discarded {s.get('discarded')})")
    for name, g in (s.get("group_stats") or {}).items():
        print(f"  group {name}: {g}")
    print(f"RSS kB: runner {s['runner_rss_start_kb']} -> {s.get('runner_rss_end_kb')}")
    for label, r in (s.get("rss_kb") or {}).items():
        print(f"  {label} (never killed): {r['start']} -> {r['end']}")
    for k in ("shm_start", "shm_end"):
        e = s[k]
        print(f"/dev/shm {k[4:]}: {e['count']} entries, shmbus: {len(e['shmbus'])} "
              f"{e['shmbus'][:6]}{' ...' if len(e['shmbus']) > 6 else ''}")
    if s["records_dir"]:
        print(f"records kept in {s['records_dir']}")
    if s["problems"]:
        print(f"FAILED: {len(s['problems'])} problems")
        for p in s["problems"][:20]:
            print("   ", p)
    else:
        print("ok: every check held")


if __name__ == "__main__":
    sys.exit(main())
