"""Chaos soak: producers, a fan-out subscriber and manual-ack groups run on one
topic while participants are SIGKILLed and restarted, or SIGSTOPped for a while;
afterwards a history checker proves what the bus promises.

    PYTHONPATH=. python tools/chaos_soak.py [--seconds 60] [--producers 3]
        [--members 2] [--partitions 4] [--ordering none|partition|both]
        [--retention consumed|log] [--capacity BYTES] [--round-seconds 60]
        [--seed S] [--bus NAME] [--json PATH] [--keep-records] [--verbose]
        [--fault lose|reorder|dup]

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
  mid-send and mid-ack.  Half of the kills of consumers wait (up to 0.3 s,
  spinning on that byte) for the victim to be recording or acking.  The step is
  read a few microseconds before the signal lands, so "ack" means "was in ack
  just before the kill": most such kills land inside the ack call or right after.  The ring is small (``--capacity``, 32 KiB by default)
  so producers spend most of their time blocked in ``send``.

No multiprocessing Event/Lock/Queue is used between processes: a process killed
while holding such a lock hangs everyone.  Coordination is by RawValue/RawArray
flags and by files; every wait has a timeout.

Rounds (``--round-seconds``, 60 by default; a run of 60 s is one round): at the
end of a round the producers are told to stop (joined with a timeout of 15 s),
every stopped participant is continued, the groups drain until each has lag 0
and nothing pending (deadline 20 s), and the round's records are checked; the
next round starts new producer incarnations while the consumers live on (they
write each round's records to a new file, the round being a RawValue read when
they write).  Checking per round keeps the runner's memory bounded on long runs
(about 30 bytes per delivery of one round).  At the end the consumers stop.

The checker (numpy over one round's records of every consumer incarnation):
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
of each consumer that was never killed (and the largest VmRSS of any
participant just before its kill), /dev/shm entries (count, and the names
starting with ``shmbus:``, this bus's and other users') at start and end; with
``--json`` all of it, per round too.  The bus is removed at the end, also on
failure and on Ctrl-C/SIGTERM; the record files (in a temporary directory) are
removed unless a check failed or ``--keep-records``.

``--fault`` tests the checker: the consumers falsify 1% of their batches'
records (leave a message out, reverse a batch, record one twice) and the run
must fail.

Limits: kills of producers land mostly while a send waits for space (the ring is
full), seldom between a claim and its commit (the partitions' recovered_claims
counter, reported, stays near 0).  Under ack="manual" nothing here measures
ack="auto" consumers or untethered groups.

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


def consumer(role, bus_name, group, ordering, procid, seed, path, rnd, stop, ready, step,
             fault=None):
    """The subscriber (role "sub") or a work group member (role "member").  Records
    go to ``path.format(round)``, the round read when they are written.  ``fault``
    (a test of the checker) falsifies 1% of the batches' records: "lose" leaves
    out a message, "reorder" reverses a batch, "dup" records a message twice."""
    rng = random.Random(seed)
    cur = rnd.value
    fd = os.open(path.format(cur), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
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
            if fault and len(out) > 1 and rng.random() < 0.01:
                if fault == "lose":
                    del out[0]
                elif fault == "reorder":
                    out.reverse()
                elif fault == "dup":
                    out.append(out[0])
            step[procid] = RECORD
            if rnd.value != cur:
                os.close(fd)
                cur = rnd.value
                fd = os.open(path.format(cur), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
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
        self.round = self.ctx.RawValue("i", 0)
        self.records = tempfile.mkdtemp(prefix="chaos-soak-")
        self.all = []            # every participant incarnation
        self.live = []           # current incarnations (maybe stopped)
        self.next_procid = 0
        self.next_stream = 0
        self.stream_owner = {}   # stream -> producer slot
        self.kills = {}          # role -> count
        self.kill_steps = {}     # step -> count
        self.member_kills = {}   # group -> count
        self.rss_at_kill = {}    # role -> largest VmRSS (kB) just before a kill
        self.stops = 0
        self.problems = []

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
            path = os.path.join(self.records, f"{group}.{procid}.{{}}.rec")
            ordering = "partition" if group in ("fanout", "work-partition") else "none"
            args = (self.bus_name, group, ordering, procid, seed, path, self.round,
                    self.stop_consumers, self.ready, self.step, self.args.fault)
        proc = self.ctx.Process(target=run_participant, args=(kind,) + args, daemon=True,
                                name=f"chaos-{kind}-{procid}")
        proc.start()
        p = Participant(kind, slot, group, procid, stream, proc, path)
        self.all.append(p)
        self.live.append(p)
        return p

    def kill(self, p, aim=False):
        """SIGKILL ``p`` (with ``aim``, once it is recording or acking, waiting up
        to 0.3 s) and start its replacement."""
        rss = rss_kb(p.proc.pid)
        if rss is not None and rss > self.rss_at_kill.get(p.kind, 0):
            self.rss_at_kill[p.kind] = rss
        step = self.step
        i = p.procid
        t = time.monotonic() + 0.3
        while aim and step[i] not in (ACK, NACK, RECORD) and time.monotonic() < t:
            pass
        at = step[i]
        try:
            os.kill(p.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.kill_steps[STEPS[at]] = self.kill_steps.get(STEPS[at], 0) + 1
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
            self.kill(victim, aim=victim.kind != "producer" and victim.stopped_until is None
                      and self.rng.random() < 0.5)
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
                   "round_seconds": a.round_seconds, "producers": a.producers,
                   "members": a.members, "partitions": a.partitions, "ordering": a.ordering,
                   "retention": a.retention, "capacity": a.capacity,
                   "shm_start": shm_entries(), "runner_rss_start_kb": rss_kb(os.getpid()),
                   "rounds": []}
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
            self.initial = self.next_procid  # the consumers started first live across rounds
            end = t0 + a.seconds
            prev = {"published": 0, "acked": {}, "kills": {}}
            rnd = 0
            while True:
                r_end = min(end, time.monotonic() + a.round_seconds)
                if end - r_end < 5:  # no round shorter than 5 s at the end
                    r_end = end
                self.round.value = rnd
                self.stop_producers.value = 0
                first_stream = self.next_stream
                for i in range(a.producers):
                    self.start("producer", i)
                next_chaos = time.monotonic() + 2.0
                while time.monotonic() < r_end:
                    time.sleep(0.02)
                    self.sample_rss()
                    self.continue_due()
                    self.note_exits()
                    if time.monotonic() >= next_chaos:
                        self.chaos_step()
                        next_chaos = time.monotonic() + self.rng.uniform(0.15, 0.9)
                info = self.end_round(bus, rnd, first_stream, prev)
                summary["rounds"].append(info)
                if a.rounds_verbose or info["problems"]:
                    print(f"round {rnd}: published {info['published']}, kills {info['kills']}, "
                          f"{'ok' if not info['problems'] else 'FAILED'}", flush=True)
                rnd += 1
                if time.monotonic() >= end or self.problems:
                    break
            self.sample_rss()
            # the long-lived ones: consumers started at the beginning and never killed
            summary["rss_kb"] = {p.label: {"start": p.rss_start, "end": rss_kb(p.proc.pid)}
                                 for p in self.live if p.procid < self.initial}
            summary["runner_rss_end_kb"] = rss_kb(os.getpid())
            self.stop_consumers.value = 1
            deadline = time.monotonic() + 10
            for p in self.live:
                p.proc.join(max(0.1, deadline - time.monotonic()))
            self.note_exits()
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
        rounds = summary["rounds"]
        summary["shm_end"] = shm_entries()
        summary["published"] = sum(r["published"] for r in rounds)
        summary["returned_sends"] = sum(r["returned_sends"] for r in rounds)
        summary["deliveries_recorded"] = sum(r["deliveries_recorded"] for r in rounds)
        summary["published_unseen"] = sum(r["published_unseen"] for r in rounds)
        summary["duplicates"] = {g: sum(r["duplicates"].get(g, 0) for r in rounds)
                                 for g in ["fanout"] + self.groups}
        summary["kills"] = dict(self.kills)
        summary["kills_total"] = sum(self.kills.values())
        summary["kill_steps"] = dict(self.kill_steps)
        summary["rss_at_kill_max_kb"] = dict(self.rss_at_kill)
        summary["stops"] = self.stops
        summary["streams"] = self.next_stream
        summary["problems"] = self.problems
        summary["records_dir"] = self.records if a.keep_records else None
        summary["wall_s"] = round(time.monotonic() - t0, 1)
        return summary

    def end_round(self, bus, rnd, first_stream, prev):
        """Stop the producers, let the groups drain, check the round's records."""
        t_end = time.monotonic()
        problems_before = len(self.problems)
        ours = [n for n in shm_entries()["shmbus"] if n.startswith(f"shmbus:{self.bus_name}")]
        self.continue_due(everyone=True)
        self.stop_producers.value = 1
        for p in [p for p in self.live if p.kind == "producer"]:
            p.proc.join(max(0.1, 15 - (time.monotonic() - t_end)))
            if p.proc.is_alive():
                self.problems.append(f"{p.label} did not stop within 15 s (a send blocked)")
            elif p.proc.exitcode == 0:
                self.live.remove(p)
        self.note_exits()
        deadline = time.monotonic() + 20
        while True:
            st, gs = self.groups_drained(bus)
            if all(g["lag"] == 0 and g["pending"] == 0 for g in gs.values()) \
                    or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        for name, g in gs.items():
            if g["lag"] or g["pending"]:
                self.problems.append(f"round {rnd}: group {name} did not drain within 20 s: "
                                     f"lag {g['lag']}, pending {g['pending']}")
        published = sum(p["published"] for p in st["partitions"])
        info = {"round": rnd, "published": published - prev["published"],
                "drain_s": round(time.monotonic() - t_end, 2), "bus_segments": len(ours)}
        kills = {"fanout": self.kills.get("sub", 0), **{g: self.member_kills.get(g, 0)
                                                          for g in self.groups}}
        info["kills"] = {g: k - prev["kills"].get(g, 0) for g, k in kills.items()}
        acked = {n: g["acked"] - prev["acked"].get(n, 0) for n, g in gs.items()}
        info["group_stats"] = {n: {k: g[k] for k in ("delivered", "acked", "redelivered",
                                                       "dead_lettered", "lag", "pending")}
                               for n, g in gs.items()}
        tc = time.monotonic()
        self.check(info, rnd, first_stream, acked)
        info["check_s"] = round(time.monotonic() - tc, 2)
        info["recovered_claims"] = sum(p["recovered_claims"] for p in st["partitions"])
        info["discarded"] = sum(p["discarded"] for p in st["partitions"])
        info["problems"] = self.problems[problems_before:]
        prev["published"] = published
        prev["acked"] = {n: g["acked"] for n, g in gs.items()}
        prev["kills"] = kills
        return info

    # -- the checker -------------------------------------------------------------

    def load(self, group, rnd):
        """The records of one group and round, and the incarnation of each."""
        parts, procs = [], []
        partial = 0
        for p in self.all:
            if p.group != group or p.path is None or not os.path.exists(p.path.format(rnd)):
                continue
            raw = np.fromfile(p.path.format(rnd), dtype=np.uint8)
            n = len(raw) // REC_DTYPE.itemsize
            if len(raw) % REC_DTYPE.itemsize:
                partial += 1
                if not p.killed:
                    self.problems.append(f"{p.label}: a partial record but it was not killed")
            parts.append(raw[:n * REC_DTYPE.itemsize].view(REC_DTYPE))
            procs.append(np.full(n, p.procid, dtype=np.int64))
        if not parts:
            return np.zeros(0, REC_DTYPE), np.zeros(0, np.int64), partial
        return np.concatenate(parts), np.concatenate(procs), partial

    def check(self, info, rnd, first_stream, acked):
        P = f"round {rnd}: "
        returned = np.frombuffer(self.returned, dtype=np.uint64)[:self.next_stream].astype(np.int64)
        returned[:first_stream] = 0
        expected = int(returned.sum())
        info["returned_sends"] = expected
        info["groups"] = {}
        ref = None
        for group in ["fanout"] + self.groups:
            r, procs, partial = self.load(group, rnd)
            gi = {"records": int(len(r)), "partial_records": partial}
            info["groups"][group] = gi
            flags = r["flags"]
            bad = np.count_nonzero((flags & (F_CRC | F_KEY)) != (F_CRC | F_KEY))
            if bad:
                self.problems.append(f"{P}{group}: {bad} torn or misrouted payloads (crc/length/key)")
            lost = np.count_nonzero(flags & F_LOST)
            if lost:
                self.problems.append(f"{P}{group}: {lost} deliveries report lost_before (tethered)")
            stream = r["stream"].astype(np.int64)
            good = ((flags & F_CRC) != 0) & (stream >= first_stream) & (stream < self.next_stream)
            stray = np.count_nonzero(((flags & F_CRC) != 0) & ~good)
            if stray:
                self.problems.append(f"{P}{group}: {stray} records of a stream not of this round")
            r, procs, stream = r[good], procs[good], stream[good]
            seq = r["seq"].astype(np.int64)
            pos = (r["part"].astype(np.int64) << 48) | r["offset"].astype(np.int64)
            msg = (stream << 32) | seq
            o = np.argsort(pos, kind="stable")
            ps, ms, dc = pos[o], msg[o], r["dcount"][o]
            same = ps[1:] == ps[:-1]
            clash = np.count_nonzero(same & (ms[1:] != ms[:-1]))
            if clash:
                self.problems.append(f"{P}{group}: {clash} positions (partition, offset) carry two "
                                     f"different messages")
            gi["duplicates"] = int(np.count_nonzero(same))
            f1 = ps[dc == 1]
            dup_first = np.count_nonzero(f1[1:] == f1[:-1])
            if dup_first:
                self.problems.append(f"{P}{group}: {dup_first} messages delivered twice with "
                                     f"delivery_count 1")
            keep = np.ones(len(ps), bool)
            keep[1:] = ~same
            upos, umsg = ps[keep], ms[keep]
            gi["distinct"] = int(len(upos))
            if group == "fanout":
                ref = (upos, umsg)
                sp = np.unique(((umsg >> 32) << 16) | (upos >> 48))
                multi = np.count_nonzero(np.diff(sp >> 16) == 0)
                if multi:
                    self.problems.append(f"{P}{multi} streams seen on more than one partition")
                info["published_unseen"] = int(info["published"] - len(upos))
            elif len(upos):
                i = np.minimum(np.searchsorted(ref[0], upos), max(len(ref[0]) - 1, 0))
                found = (ref[0][i] == upos) if len(ref[0]) else np.zeros(len(upos), bool)
                if not found.all():
                    self.problems.append(f"{P}{group}: {np.count_nonzero(~found)} messages the "
                                         f"fan-out subscriber never processed")
                other = np.count_nonzero(found & (ref[1][i] != umsg))
                if other:
                    self.problems.append(f"{P}{group}: {other} positions carry another message "
                                         f"than the subscriber saw")
            sm = np.sort(umsg)
            twice = np.count_nonzero(sm[1:] == sm[:-1])
            if twice:
                self.problems.append(f"{P}{group}: {twice} messages published at two positions")
            # no loss: every returned send processed
            s, q = sm >> 32, sm & 0xFFFFFFFF
            below = q < returned[s]
            covered = int(np.count_nonzero(below))
            if covered != expected:
                have = np.bincount(s[below], minlength=len(returned))
                short = [(int(k), int(returned[k] - have[k])) for k in
                         np.nonzero(have < returned)[0]]
                self.problems.append(f"{P}{group}: {expected - covered} returned sends never "
                                     f"processed; (stream, missing): {short[:8]}")
            if group == "fanout":
                self.check_subscriber(P, r, procs, stream, seq, returned, gi, info["kills"]["fanout"])
            elif group == "work-partition":
                self.check_partition_order(P, r, stream, seq, returned)
            # the acked counter: short only by batches whose member was killed
            # between completing them and counting them
            if group in acked:
                batch = SUB_BATCH if group == "fanout" else max(MEMBER_BATCHES)
                lo = gi["distinct"] - batch * info["kills"][group]
                if not lo <= acked[group] <= info["published"]:
                    self.problems.append(f"{P}{group}: acked {acked[group]} outside [{lo}, "
                                         f"{info['published']}] ({info['kills'][group]} kills)")
        info["deliveries_recorded"] = sum(g["records"] for g in info["groups"].values())
        info["duplicates"] = {g: i["duplicates"] for g, i in info["groups"].items()}

    def check_subscriber(self, P, r, procs, stream, seq, returned, gi, kills):
        if not len(r):
            return
        # per incarnation and stream, in the order recorded (a stable sort keeps
        # each file's order): seq strictly increases, no gap below the returned count
        o = np.argsort((procs << 32) | stream, kind="stable")
        pr, st, sq = procs[o], stream[o], seq[o]
        same = (pr[1:] == pr[:-1]) & (st[1:] == st[:-1])
        s0, s1 = sq[:-1], sq[1:]
        back = np.count_nonzero(same & (s1 <= s0))
        if back:
            self.problems.append(f"{P}fanout: {back} times a stream's seq did not increase within "
                                 f"one subscriber incarnation")
        gap = np.count_nonzero(same & (s1 != s0 + 1) & (s0 + 1 < returned[st[:-1]]))
        if gap:
            self.problems.append(f"{P}fanout: {gap} gaps below the returned count within one "
                                 f"subscriber incarnation")
        gi["gaps_past_returned"] = int(np.count_nonzero(same & (s1 > s0 + 1)) - gap)
        part = r["part"].astype(np.int64)
        o = np.argsort((procs << 16) | part, kind="stable")
        pr, pa, off = procs[o], part[o], r["offset"][o]
        same = (pr[1:] == pr[:-1]) & (pa[1:] == pa[:-1])
        back = np.count_nonzero(same & (off[1:] <= off[:-1]))
        if back:
            self.problems.append(f"{P}fanout: {back} times a partition's offset did not increase "
                                 f"within one subscriber incarnation")
        if gi["duplicates"] > SUB_BATCH * kills:
            self.problems.append(f"{P}fanout: {gi['duplicates']} duplicates, more than one batch "
                                 f"for each of {kills} subscriber kills")

    def check_partition_order(self, P, r, stream, seq, returned):
        """Per stream, by processing time: no seq before every smaller one was
        processed at least once (only seqs below the returned count)."""
        keep = seq < returned[stream]
        stream, seq, t = stream[keep], seq[keep], r["t"][keep]
        if not len(seq):
            return
        o = np.lexsort((seq, t, stream))
        stream, seq = stream[o], seq[o]
        key = (stream << 32) | seq
        prev = np.empty_like(key)
        prev[1:] = np.maximum.accumulate(key)[:-1]
        start = np.ones(len(key), bool)
        start[1:] = stream[1:] != stream[:-1]
        prev_seq = np.where(start, -1, prev - (stream << 32))
        early = np.nonzero(seq > prev_seq + 1)[0]
        if len(early):
            i = early[0]
            self.problems.append(f"{P}work-partition: {len(early)} times a seq processed before a "
                                 f"smaller one; first: stream {int(stream[i])} seq {int(seq[i])} "
                                 f"when at most {int(prev_seq[i])} was done")


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
    ap.add_argument("--round-seconds", type=float, default=60.0,
                    help="check every this many seconds (producers stop, groups drain, the "
                         "round's records are checked; consumers live on); bounds memory")
    ap.add_argument("--verbose", dest="rounds_verbose", action="store_true",
                    help="print a line per round")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--fault", choices=("lose", "reorder", "dup"), default=None,
                    help="test the checker: consumers falsify 1%% of their records (must fail)")
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
    rounds = s["rounds"]
    print(f"published {s['published']} messages ({s['returned_sends']} sends returned, "
          f"{s['streams']} producer incarnations) in {len(rounds)} rounds; deliveries recorded "
          f"{s['deliveries_recorded']}; wall {s['wall_s']} s (drain+check per round: max "
          f"{max([r['drain_s'] + r.get('check_s', 0) for r in rounds] or [0]):.1f} s)")
    print(f"kills {s['kills_total']} {s['kills']}, at step {s['kill_steps']}; stops {s['stops']}")
    print(f"duplicates {s['duplicates']}; published but processed by no one "
          f"{s['published_unseen']} (recovered claims "
          f"{rounds[-1]['recovered_claims'] if rounds else None})")
    print(f"RSS kB: runner {s['runner_rss_start_kb']} -> {s.get('runner_rss_end_kb')}; "
          f"largest at a kill {s['rss_at_kill_max_kb']}")
    for label, r in (s.get("rss_kb") or {}).items():
        print(f"  {label} (never killed): {r['start']} -> {r['end']}")
    for k in ("shm_start", "shm_end"):
        e = s[k]
        ours = [n for n in e["shmbus"] if n.startswith(f"shmbus:{s['bus']}")]
        print(f"/dev/shm {k[4:]}: {e['count']} entries, {len(e['shmbus'])} shmbus:* "
              f"({len(ours)} of this bus; {len(e['shmbus']) - len(ours)} of other users: "
              f"{e['shmbus'][:3]}{' ...' if len(e['shmbus']) > 3 else ''})")
    if rounds:
        print(f"  this bus had {rounds[0]['bus_segments']} segments during the run")
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
