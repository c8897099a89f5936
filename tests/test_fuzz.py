"""Hostile input never crashes a reader (DESIGN invariant 3).

Each trial copies a live topic (built once per scenario by a child that left
without closing anything: messages published, groups with committed offsets, a
manual-ack group holding deliveries, a private group whose owner is gone, in one
scenario a claim never committed) under a fresh bus name, damages its segment
files in /dev/shm (random byte flips; chosen fields of the layout set to
boundary, huge or random values; files cut short, made longer or removed), and
runs one fresh child (tests/_fuzz_workers.py victim) that opens the bus and does
what an application does.  The child must exit 0 within 5 s, having either
worked or raised an error of the ShmbusError family at some step: never killed
by a signal, never hung, never another exception (TypeError, ValueError,
OverflowError, MemoryError from garbage are bugs).

Damage is aimed with the layout as the compiler lays it out (tests/native/
layout_fields.c prints every field's offset; the layout is declared only in
native/shmbus_layout.h).  "Cold" damage is done before the child starts;
"live" damage (writes only) by the child itself once its producer and consumer
have the topic mapped.  Truncation is only cold: a file cut short under a live
mapping gives SIGBUS on access, which cannot be told apart without a fault
handler (and only the segment's owner can cut a 0600 file).

Trials are reproducible from their seed; a failure names it.  Replay some with
    FUZZ_SEEDS=12,345 python -m pytest -p no:cacheprovider tests/test_fuzz.py -k replay -s
"""
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SHM = "/dev/shm"
WORKER = os.path.join(HERE, "_fuzz_workers.py")
SESSION = f"test-{os.getpid()}-"  # as conftest names buses: the session cleans up after them
TOPIC = "fz"
SCENARIOS = ("groups", "log", "claim")
TRIAL_LIMIT = 5.0  # seconds a victim may take
PARALLEL = 2
SEEDS = range(int(os.environ.get("FUZZ_TRIALS", 240)))  # more: FUZZ_TRIALS=2000
CHUNK = 30
# seeds whose trial shows a bug not fixed yet: seed -> reason (tested as xfail)
KNOWN_BAD = {}


# -- the layout, from the compiler ---------------------------------------------------

@pytest.fixture(scope="module")
def layout(tmp_path_factory):
    if shutil.which("gcc") is None:
        pytest.skip("gcc is not installed")
    exe = tmp_path_factory.mktemp("layout") / "layout_fields"
    built = subprocess.run(["gcc", "-std=gnu11", "-I", os.path.join(ROOT, "native"),
                            os.path.join(HERE, "native", "layout_fields.c"), "-o", str(exe)],
                           capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    return Layout(json.loads(subprocess.run([str(exe)], capture_output=True, text=True,
                                            check=True).stdout))


class Layout:
    def __init__(self, fields):
        self.fields = fields

    def off(self, name):
        return self.fields[name][0]

    def size(self, name):
        return self.fields[name][1]

    def field(self, base, struct, name):
        """(offset, size) of struct.name in a struct that starts at base."""
        at, size = self.fields[f"{struct}.{name}"]
        return base + at, size


def u(buf, at, size):
    return int.from_bytes(buf[at:at + size], "little")


# -- templates: a live topic per scenario ----------------------------------------------

def segments(bus):
    mark = f"shmbus:{bus}"
    try:
        names = os.listdir(SHM)
    except FileNotFoundError:
        return []
    return [n for n in names if n == mark or n.startswith(mark + ":")]


def remove_bus(bus):
    for n in segments(bus):
        try:
            os.unlink(os.path.join(SHM, n))
        except FileNotFoundError:
            pass


def child_env():
    env = dict(os.environ)
    env.pop("SHMBUS_FAULT", None)
    paths = [ROOT, HERE] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


class Template:
    """The bytes of every segment of a scenario's bus, by name suffix, and where
    the interesting fields are."""

    def __init__(self, scenario, files, lay):
        self.scenario = scenario
        self.files = files
        self.lay = lay
        meta = files[f":{TOPIC}:meta"]
        cfg = lay.off("shmbus_meta.config")
        self.partitions = u(meta, *lay.field(cfg, "shmbus_topic_config", "partitions"))
        self.capacity = u(meta, *lay.field(cfg, "shmbus_topic_config", "capacity"))
        self.slot_count = u(meta, *lay.field(cfg, "shmbus_topic_config", "slot_count"))
        part = files[f":{TOPIC}:p0"]
        self.slots_offset = u(part, *lay.field(0, "shmbus_partition", "slots_offset"))
        self.pending_offset = u(part, *lay.field(0, "shmbus_partition", "pending_offset"))
        self.window = u(part, *lay.field(0, "shmbus_partition", "pending_window"))
        self.data_offset = u(part, *lay.field(0, "shmbus_partition", "data_offset"))
        tail = lay.off("shmbus_partition.tail")
        self.tail_offset = u(part, *lay.field(tail, "shmbus_point", "offset"))
        grec = lay.size("shmbus_group_record")
        groups = lay.off("shmbus_meta.groups")
        self.groups = [g for g in range(64)
                       if u(meta, *lay.field(groups + g * grec, "shmbus_group_record", "state"))]
        mrec = lay.size("shmbus_member_record")
        members = lay.off("shmbus_meta.members")
        self.members = [m for m in range(128)
                        if u(meta, *lay.field(members + m * mrec, "shmbus_member_record", "pid"))]

    def field_groups(self, i):
        """The fields worth damaging, by kind: {kind: [(segment suffix, offset,
        size)]}, the metadata's and partition i's."""
        meta, part = self.meta_fields(), self.partition_fields(i)
        return {"meta header": meta[:4], "meta config": meta[4:16], "meta tables": meta[16:],
                "partition header": part[:11], "partition lines": part[11:self.slots_at],
                "slots": part[self.slots_at:self.pending_at], "pending": part[self.pending_at:]}

    def meta_fields(self):
        """(segment suffix, offset, size) of the metadata's fields worth damaging:
        4 of the header, 12 of the configuration, then the tables."""
        lay, out, seg = self.lay, [], f":{TOPIC}:meta"
        for f in ("magic", "layout_version", "kind", "segment_size"):
            out.append((seg, *lay.field(0, "shmbus_segment_header", f)))
        cfg = lay.off("shmbus_meta.config")
        for f in ("partitions", "on_full", "retention", "fsync", "capacity", "slot_count",
                  "max_message_size", "retention_bytes", "retention_ns", "flags", "spill_bytes",
                  "mode"):
            out.append((seg, *lay.field(cfg, "shmbus_topic_config", f)))
        for f in ("seq", "waiters"):
            out.append((seg, *lay.field(lay.off("shmbus_meta.wake"), "shmbus_wake_line", f)))
        for f in ("active", "tethered"):
            out.append((seg, *lay.field(lay.off("shmbus_meta.masks"), "shmbus_group_masks", f)))
        members, mrec = lay.off("shmbus_meta.members"), lay.size("shmbus_member_record")
        for m in self.members:
            for f in ("group", "incarnation", "attached_ns", "last_active_ns"):
                out.append((seg, *lay.field(members + m * mrec, "shmbus_member_record", f)))
        groups, grec = lay.off("shmbus_meta.groups"), lay.size("shmbus_group_record")
        for g in self.groups + [max(self.groups) + 1]:
            for f in ("state", "flags", "owner_member", "name_len", "owner_since", "name", "ack",
                      "ordering", "ack_timeout_ns", "max_deliveries", "epoch"):
                at, size = lay.field(groups + g * grec, "shmbus_group_record", f)
                out.append((seg, at, min(size, 8)))
        return out

    def partition_fields(self, i):
        lay, out, seg = self.lay, [], f":{TOPIC}:p{i}"
        for f in ("magic", "layout_version", "kind", "segment_size"):
            out.append((seg, *lay.field(0, "shmbus_segment_header", f)))
        for f in ("index", "capacity", "slot_count", "slots_offset", "pending_offset",
                  "pending_window", "data_offset"):
            out.append((seg, *lay.field(0, "shmbus_partition", f)))
        for line in ("tail", "head"):
            for f in ("position", "offset"):
                out.append((seg, *lay.field(lay.off(f"shmbus_partition.{line}"), "shmbus_point", f)))
        for f in ("seq", "waiters"):
            out.append((seg, *lay.field(lay.off("shmbus_partition.space"), "shmbus_space_line", f)))
        out.append((seg, *lay.field(lay.off("shmbus_partition.counters"),
                                    "shmbus_partition_counters", "durable")))
        spill = lay.off("shmbus_partition.spill")
        for f in ("in", "out"):
            at, _ = lay.field(spill, "shmbus_spill_line", f)
            out.append((seg, *lay.field(at, "shmbus_point", "offset")))
        producers, pl = lay.off("shmbus_partition.producers"), lay.size("shmbus_producer_line")
        for k in range(3):
            for f in ("intent", "intent_end"):
                out.append((seg, *lay.field(producers + k * pl, "shmbus_producer_line", f)))
        groups, gl = lay.off("shmbus_partition.groups"), lay.size("shmbus_group_line")
        for g in self.groups:
            for f in ("cursor", "committed_offset", "committed_position", "owner", "ready", "lost"):
                out.append((seg, *lay.field(groups + g * gl, "shmbus_group_line", f)))
        slot = lay.size("shmbus_slot")
        self.slots_at = len(out)
        for k in range(self.slot_count):
            for f in ("seq", "position", "timestamp_ns", "value_len", "headers_len", "key_len",
                      "flags"):
                out.append((seg, *lay.field(self.slots_offset + k * slot, "shmbus_slot", f)))
        entry = lay.size("shmbus_pending")
        self.pending_at = len(out)
        for g in self.groups:
            for k in range(self.window):
                at = self.pending_offset + (g * self.window + k) * entry
                for f in ("offset", "word"):
                    out.append((seg, *lay.field(at, "shmbus_pending", f)))
        return out

    def regions(self):
        """(segment suffix, start, end) of byte ranges worth flipping."""
        lay = self.lay
        meta = f":{TOPIC}:meta"
        groups, grec = lay.off("shmbus_meta.groups"), lay.size("shmbus_group_record")
        members, mrec = lay.off("shmbus_meta.members"), lay.size("shmbus_member_record")
        out = [(meta, 0, lay.off("shmbus_meta.producers")),
               (meta, groups, groups + (max(self.groups) + 1) * grec),
               (meta, members, members + (max(self.members) + 1) * mrec),
               (meta, 0, lay.size("shmbus_meta"))]
        entry = lay.size("shmbus_pending")
        for i in range(self.partitions):
            p = f":{TOPIC}:p{i}"
            out += [(p, 0, lay.size("shmbus_partition")),
                    (p, self.slots_offset, self.pending_offset),
                    (p, self.pending_offset + min(self.groups) * self.window * entry,
                     self.pending_offset + (max(self.groups) + 1) * self.window * entry),
                    (p, self.data_offset, self.data_offset + self.capacity),
                    (p, 0, len(self.files[p]))]
        return out


@pytest.fixture(scope="module")
def templates(layout):
    out = {}
    for sc in SCENARIOS:
        bus = f"{SESSION}fzt-{sc}"
        try:
            run = subprocess.run([sys.executable, WORKER, "setup", bus, sc], env=child_env(),
                                 capture_output=True, text=True, timeout=60)
            # the claim scenario's setup dies on purpose (SIGKILL between claim and commit)
            assert run.returncode == (-9 if sc == "claim" else 0), run.stderr
            files = {}
            for n in segments(bus):
                with open(os.path.join(SHM, n), "rb") as f:
                    files[n[len(f"shmbus:{bus}"):]] = f.read()
        finally:
            remove_bus(bus)
        out[sc] = Template(sc, files, layout)
    return out


# -- damage ----------------------------------------------------------------------------

def boundary_values(rng, t, v, size):
    bits = 8 * size
    top = (1 << bits) - 1
    picks = [0, 1, top, top - 1, 1 << (bits - 1), (1 << (bits - 1)) - 1, v + 1, v - 1,
             v ^ (1 << rng.randrange(bits)), rng.getrandbits(bits), v + t.slot_count,
             v - t.slot_count, v + t.capacity, v - t.capacity, v + t.window, v + t.window + 1,
             t.capacity, t.capacity - 1, t.slot_count, t.tail_offset + 1, t.tail_offset + 1 << 1,
             v << 1, v | (1 << (bits - 1))]
    return rng.choice(picks) & top


def make_damage(seed, templates):
    """The trial of a seed: (scenario, kind, live, writes, cuts, description)."""
    rng = random.Random(seed)
    sc = SCENARIOS[seed % len(SCENARIOS)]
    t = templates[sc]
    kind = rng.choices(["flip", "field", "truncate", "mixed"], weights=[3, 5, 2, 2])[0]
    live = kind in ("flip", "field") and rng.random() < 0.3
    writes, cuts, desc = [], [], []
    n_flips = {"flip": rng.randint(1, 3), "field": 0, "truncate": 0, "mixed": 1}[kind]
    n_fields = {"flip": 0, "field": rng.randint(1, 2), "truncate": 0, "mixed": 1}[kind]
    regions = t.regions()
    for _ in range(n_flips):
        seg, lo, hi = rng.choice(regions)
        count = rng.choice([1, 1, 2, 4, 16])
        for _ in range(count):
            at = rng.randrange(lo, hi)
            old = t.files[seg][at]
            new = old ^ (1 << rng.randrange(8) if rng.random() < 0.5 else rng.randrange(1, 256))
            writes.append((seg, at, bytes([new])))
        desc.append(f"flip {count} byte(s) of {seg} in [{lo}, {hi})")
    for _ in range(n_fields):
        kinds = t.field_groups(rng.randrange(t.partitions))
        seg, at, size = rng.choice(kinds[rng.choice(sorted(kinds))])
        v = u(t.files[seg], at, size)
        new = boundary_values(rng, t, v, size)
        writes.append((seg, at, new.to_bytes(size, "little")))
        desc.append(f"set {seg}@{at} ({size} bytes) {v:#x} -> {new:#x}")
    if kind in ("truncate", "mixed") and (kind == "truncate" or rng.random() < 0.3):
        seg = rng.choice([f":{TOPIC}:meta", ""] + [f":{TOPIC}:p{i}" for i in range(t.partitions)])
        size = len(t.files[seg])
        new = rng.choice([0, rng.randrange(1, 64), 63, size // 2, size - 1, size - 4096,
                          rng.randrange(size), size + 1, size + 4096, None])
        cuts.append((seg, new if new is None else max(new, 0)))
        desc.append(f"remove {seg}" if new is None else f"cut {seg} from {size} to {max(new, 0)} bytes")
    return sc, kind, live, writes, cuts, desc


# -- running trials --------------------------------------------------------------------

def write_bus(bus, t):
    for suffix, data in t.files.items():
        fd = os.open(os.path.join(SHM, f"shmbus:{bus}{suffix}"),
                     os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)


def apply_cold(bus, writes, cuts):
    for seg, at, data in writes:
        fd = os.open(os.path.join(SHM, f"shmbus:{bus}{seg}"), os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.pwrite(fd, data, at)
        finally:
            os.close(fd)
    for seg, size in cuts:
        path = os.path.join(SHM, f"shmbus:{bus}{seg}")
        if size is None:
            os.unlink(path)
        else:
            os.truncate(path, size)


def run_victim(bus, scenario, live_writes=None):
    """(outcome, report or detail, seconds): outcome is "ok" or what went wrong."""
    args = [sys.executable, WORKER, "victim", bus, scenario]
    if live_writes:
        args.append(json.dumps([[f"shmbus:{bus}{seg}", at, data.hex()]
                                for seg, at, data in live_writes]))
    start = time.monotonic()
    # in an empty directory of its own: damage must not make it create files where it runs
    cwd = tempfile.mkdtemp(prefix="shmbus-fuzz-")
    try:
        proc = subprocess.Popen(args, env=child_env(), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, cwd=cwd)
        try:
            out, err = proc.communicate(timeout=TRIAL_LIMIT)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate(timeout=10)
            return "hang", f"killed after {TRIAL_LIMIT}s; stderr: {err[-2000:]}", \
                time.monotonic() - start
        stray = os.listdir(cwd)
    finally:
        shutil.rmtree(cwd, ignore_errors=True)
    took = time.monotonic() - start
    if stray:
        return "stray files", f"made {stray} in its working directory", took
    if proc.returncode < 0:
        return "signal", f"killed by signal {-proc.returncode}; stderr: {err[-2000:]}", took
    if proc.returncode != 0:
        return "exception", f"exit {proc.returncode}; stderr: {err[-3000:]}", took
    try:
        report = json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return "no report", f"stdout: {out[-1000:]!r}; stderr: {err[-1000:]}", took
    return "ok", report, took


def trial(seed, templates):
    sc, kind, live, writes, cuts, desc = make_damage(seed, templates)
    bus = f"{SESSION}fz{seed}"
    remove_bus(bus)
    try:
        write_bus(bus, templates[sc])
        if live:
            outcome, report, took = run_victim(bus, sc, writes)
        else:
            apply_cold(bus, writes, cuts)
            outcome, report, took = run_victim(bus, sc)
    finally:
        remove_bus(bus)
    return dict(seed=seed, scenario=sc, kind=kind, live=live, damage=desc, outcome=outcome,
                report=report, took=took)


def first_error(report):
    for name, result, *_ in report["steps"]:
        if result != "ok":
            return f"{name}: {result}"
    return "worked"


def describe(r):
    return (f"seed {r['seed']} ({r['scenario']}, {r['kind']}{', live' if r['live'] else ''}): "
            f"{r['outcome']}\n  damage: {'; '.join(r['damage'])}\n  {r['report']}\n"
            f"  replay: FUZZ_SEEDS={r['seed']} python -m pytest -p no:cacheprovider "
            f"tests/test_fuzz.py -k replay -s")


def run_trials(seeds, templates):
    with ThreadPoolExecutor(PARALLEL) as pool:
        return list(pool.map(lambda s: trial(s, templates), seeds))


def summarize(results):
    tally = {}
    for r in results:
        key = first_error(r["report"]) if r["outcome"] == "ok" else r["outcome"]
        tally[key] = tally.get(key, 0) + 1
    for key, n in sorted(tally.items(), key=lambda kv: -kv[1]):
        print(f"  {n:4d}  {key}")


# -- tests -----------------------------------------------------------------------------

@pytest.mark.timeout(60)
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_undamaged_topic_works(scenario, templates):
    """The victim's sequence works on an intact copy: every step, and it reads
    back what it sent (so the trials below exercise real reads and acks)."""
    bus = f"{SESSION}fzok-{scenario}"
    try:
        write_bus(bus, templates[scenario])
        outcome, report, took = run_victim(bus, scenario)
    finally:
        remove_bus(bus)
    assert outcome == "ok", report
    assert all(step[1] == "ok" for step in report["steps"]), report
    assert report["own_seen"] and report["received"] > 5, report
    assert took < TRIAL_LIMIT


# (segment, new size: an int is a size, a string adds to the size the segment has)
CUTS = [("meta", 0), ("meta", 63), ("meta", "-1"), ("meta", "+64"), ("p0", 0), ("p0", 100),
        ("p0", "-1"), ("p0", "-4096"), ("p0", "+4096"), ("p1", "-64"), ("marker", 8)]


@pytest.mark.timeout(60)
def test_truncated_or_extended_segment_is_detected_at_open(templates):
    """A segment whose size is not the one its header and the topic's geometry
    give (cut short, made longer, emptied) is refused at open with
    CorruptSegmentError, whatever else the victim tries."""
    t = templates["groups"]

    def one(case):
        which, how = case
        seg = {"marker": ""}.get(which, f":{TOPIC}:{which}")
        new = how if isinstance(how, int) else len(t.files[seg]) + int(how)
        bus = f"{SESSION}fzcut-{which}{new}"
        remove_bus(bus)
        try:
            write_bus(bus, t)
            apply_cold(bus, [], [(seg, new)])
            return case, new, run_victim(bus, "groups")
        finally:
            remove_bus(bus)

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(one, CUTS))
    bad = []
    for (which, _), new, (outcome, report, took) in results:
        if outcome != "ok":
            bad.append((which, new, outcome, report))
            continue
        failed = [s for s in report["steps"] if s[1] != "ok"]
        first = "bus" if which == "marker" else "topic_info"
        # an empty metadata file is what a creator that died leaves:
        # the topic is taken over (removed), and openers are told it does not exist
        want = ("CorruptSegmentError", "TopicNotFoundError") if which == "meta" and new == 0 \
            else ("CorruptSegmentError",)
        if not failed or failed[0][0] != first or failed[0][1] not in want:
            bad.append((which, new, report["steps"]))
    assert not bad, bad


@pytest.mark.timeout(120)
@pytest.mark.parametrize("chunk", range(0, len(SEEDS), CHUNK),
                         ids=lambda c: f"seeds{c}-{c + CHUNK - 1}")
def test_fuzz(chunk, templates):
    seeds = [s for s in SEEDS[chunk:chunk + CHUNK] if s not in KNOWN_BAD]
    results = run_trials(seeds, templates)
    print(f"\nseeds {chunk}..{chunk + CHUNK - 1}: {len(results)} trials, "
          f"slowest {max(r['took'] for r in results):.2f}s")
    summarize(results)
    bad = [r for r in results if r["outcome"] != "ok"]
    assert not bad, "\n".join(describe(r) for r in bad)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("seed", sorted(KNOWN_BAD))
def test_known_bad(seed, templates):
    r = trial(seed, templates)
    if r["outcome"] != "ok":
        pytest.xfail(KNOWN_BAD[seed])
    pytest.fail(f"seed {seed} passes now: remove it from KNOWN_BAD")


@pytest.mark.timeout(600)
def test_replay(templates):
    """Runs the seeds in FUZZ_SEEDS (comma-separated) and prints what each did."""
    wanted = os.environ.get("FUZZ_SEEDS")
    if not wanted:
        pytest.skip("set FUZZ_SEEDS=seed,seed,... to replay trials")
    results = [trial(int(s), templates) for s in wanted.split(",")]
    for r in results:
        print(describe(r))
    assert all(r["outcome"] == "ok" for r in results)


# -- what the fuzz found, pinned -------------------------------------------------------

def group_entry(t, name):
    """Offset of the group record of the named group in the metadata."""
    lay, meta = t.lay, t.files[f":{TOPIC}:meta"]
    groups, grec = lay.off("shmbus_meta.groups"), lay.size("shmbus_group_record")
    for g in t.groups:
        at, _ = lay.field(groups + g * grec, "shmbus_group_record", "name")
        if meta[at:at + len(name) + 1] == name.encode() + b"\0":
            return groups + g * grec
    raise AssertionError(f"no group {name!r}")


def targeted(t, scenario, writes, label):
    bus = f"{SESSION}fzpin-{label}"
    remove_bus(bus)
    try:
        write_bus(bus, t)
        apply_cold(bus, writes, [])
        outcome, report, _ = run_victim(bus, scenario)
    finally:
        remove_bus(bus)
    assert outcome == "ok", report
    return {name: result for name, result, *_ in report["steps"]}


@pytest.mark.timeout(60)
def test_damaged_group_entries_and_spill_setting_raise_corrupt_segment(templates):
    t = templates["groups"]
    lay, meta = t.lay, f":{TOPIC}:meta"
    work = group_entry(t, "work")
    ack, size = lay.field(work, "shmbus_group_record", "ack")
    steps = targeted(t, "groups", [(meta, ack, (7).to_bytes(size, "little"))], "ack")
    assert steps["consumer"] == "CorruptSegmentError"  # not ConfigMismatchError
    name, _ = lay.field(group_entry(t, "audit"), "shmbus_group_record", "name")
    steps = targeted(t, "groups", [(meta, name, b"\xff")], "name")
    assert steps["stats"] == "CorruptSegmentError"  # not UnicodeDecodeError
    # on_full=spill with the spill_dir of a topic that never spilled (empty): refused,
    # and no spill file made in the working directory (run_victim checks)
    on_full, size = lay.field(lay.off("shmbus_meta.config"), "shmbus_topic_config", "on_full")
    steps = targeted(t, "groups", [(meta, on_full, (3).to_bytes(size, "little"))], "spill")
    assert steps["topic_info"] == "CorruptSegmentError"


@pytest.mark.parametrize("descr", [
    '(("x",), (2,))', "(1, 2, 3)", "{1: 2}", '("O", (1,))', '("<i4", (1.5,))',
    '("<i4", 5)', "(" * 5000, '([("a", "<i4"), ("a", "<i4")], (1,))', '("<U99999999999", (1,))',
    '("<i4", (' + "9" * 5000 + ",))",
])
def test_garbled_array_description_raises_corrupt_segment(descr):
    import shmbus
    from shmbus import _array
    with pytest.raises(shmbus.CorruptSegmentError):
        _array.restore(b"\0" * 8, descr)
