"""Disk-backed buses with real processes: what a returned send promises under
each fsync policy, recovery after every process was SIGKILLed, incomplete
tails, damaged and truncated files, and bad input.  Every wait is bounded."""
import os
import random
import signal
import threading
import time
import uuid

import pytest

import shmbus
from _procs import wait_ready
from _workers import parse, payload

D = "_disk_workers:"
pytestmark = pytest.mark.timeout(180)


@pytest.fixture
def disk(tmp_path):
    """(bus name, directory) of a fresh disk bus; the directory goes with tmp_path."""
    name = f"disk-{uuid.uuid4().hex[:8]}"
    path = str(tmp_path / "bus")
    with shmbus.Bus(name, path=path):
        pass
    return name, path


def partition_file(path, bus_name, topic, i=0):
    return os.path.join(path, f"shmbus:{bus_name}:{topic}:p{i}")


def where(bus_name, path, topic, value):
    """The file offset of a record's value in partition 0 (found by its bytes)."""
    with open(partition_file(path, bus_name, topic), "rb") as f:
        at = f.read().find(value)
    assert at > 0
    return at


@pytest.mark.parametrize("fsync", ["never", "batch", "always"])
def test_messages_and_group_offsets_survive_closing_everything(disk, procs, fsync):
    name, path = disk
    with shmbus.Bus(name, path=path) as bus:
        bus.create_topic("t", capacity=2**16, fsync=fsync)
        assert bus.topic_info("t")["fsync"] == fsync
        with bus.producer("t") as p:
            for i in range(100):
                p.send(payload(0, i), key=b"k", headers={"n": str(i)})
            p.flush()
        with bus.consumer("t", group="g", start="earliest", ack="manual") as c:
            msgs = c.poll_batch(40, timeout=2)
            assert len(msgs) == 40
            c.ack(msgs)
    # a fresh process: the group resumes at 40
    procs.start("again", D + "read_all", bus_name=name, path=path, topic="t", group="g")
    got, committed, parts = procs.result("again")
    assert committed == [40]
    assert got == [(0, i) for i in range(40, 100)]
    assert parts[0]["published"] == 100 and parts[0]["discarded"] == 0


def test_sigkill_everything_at_random_points_keeps_every_returned_send(disk, procs, spawn):
    """fsync=always, two producers and a group member, all SIGKILLed at a random
    moment, five times over: a fresh process finds every send that returned,
    in each producer's order, intact, and the member's group where it was."""
    name, path = disk
    with shmbus.Bus(name, path=path) as bus:
        bus.create_topic("t", capacity=2**20, max_messages=2**14, fsync="always")
        bus.consumer("t", group="audit", start="earliest", ack="manual").close()  # keeps all
    rng = random.Random(7)
    committed = 0
    for rnd in range(5):
        counts = {k: spawn.Value("q", 0, lock=False) for k in (0, 1)}
        readies = [spawn.Event() for _ in range(3)]
        for k in (0, 1):
            procs.start(f"s{k}.{rnd}", D + "sender", bus_name=name, path=path, topic="t",
                        pid=k * 100 + rnd, returned=counts[k], ready=readies[k])
        procs.start(f"m.{rnd}", D + "member", bus_name=name, path=path, topic="t", group="g",
                    ready=readies[2])
        wait_ready(*readies)
        time.sleep(rng.uniform(0.05, 0.4))
        labels = (f"s0.{rnd}", f"s1.{rnd}", f"m.{rnd}")
        for label in labels:
            os.kill(procs.procs[label].pid, signal.SIGKILL)
        for label in labels:
            assert procs.join(label, timeout=30) == -signal.SIGKILL
        returned = {k * 100 + rnd: counts[k].value for k in (0, 1)}
        assert all(returned.values()), "a producer sent nothing before the kill"
        procs.start(f"r.{rnd}", D + "read_all", bus_name=name, path=path, topic="t",
                    group="audit")
        got, _, parts = procs.result(f"r.{rnd}")
        assert None not in got, "a torn message came back"
        seqs = {}
        for pid, seq in got:
            seqs.setdefault(pid, []).append(seq)
        assert set(seqs) <= set(returned)
        for pid, n in returned.items():
            have = seqs.get(pid, [])
            # in order, no gap, no duplicate, and every send that returned (one
            # more may have been committed and not yet returned at the kill)
            assert have == list(range(len(have))), f"producer {pid}: {have[:5]}..."
            assert n <= len(have) <= n + 1, (pid, n, len(have))
        assert parts[0]["discarded"] <= 2 * (rnd + 1)  # a claim per killed producer
        with shmbus.Bus(name, path=path) as bus:  # closed: the next round's first opener recovers
            g = [x for x in bus.stats("t")["groups"] if x["name"] == "g"][0]
        assert committed <= g["partitions"][0]["committed"] <= parts[0]["published"]
        committed = g["partitions"][0]["committed"]
    assert committed > 0


def test_incomplete_tail_is_discarded_and_counted(disk, procs):
    """A producer killed between writing a record and committing it: a fresh
    process keeps what was committed and counts the incomplete tail."""
    name, path = disk
    with shmbus.Bus(name, path=path) as bus:
        bus.create_topic("t", capacity=2**16, fsync="always")
    procs.start("fill", D + "send_n", bus_name=name, path=path, topic="t", n=20)
    assert procs.result("fill") == 20
    procs.start("dies", D + "send_n", env={"SHMBUS_FAULT": "before_commit:kill"},
                bus_name=name, path=path, topic="t", n=5)
    assert procs.join("dies", timeout=30) == -signal.SIGKILL
    procs.start("read", D + "read_all", bus_name=name, path=path, topic="t")
    got, _, parts = procs.result("read")
    assert got == [(0, i) for i in range(20)]
    assert parts[0]["discarded"] == 1 and parts[0]["published"] == 20
    # the offset is written again, and the new records are read
    procs.start("more", D + "send_n", bus_name=name, path=path, topic="t", n=3)
    assert procs.result("more") == 3
    procs.start("read2", D + "read_all", bus_name=name, path=path, topic="t")
    got, _, parts = procs.result("read2")
    assert got == [(0, i) for i in range(3)] and parts[0]["published"] == 23


def filled(disk, procs, n, size, **topic):
    """(bus name, path) of the disk bus with topic "t" holding payload(0, 0..n-1, size)."""
    name, path = disk
    with shmbus.Bus(name, path=path) as bus:
        bus.create_topic("t", **topic)
    procs.start("fill", D + "send_n", bus_name=name, path=path, topic="t", n=n, size=size)
    assert procs.result("fill") == n
    return name, path


def _flip(file, at):
    with open(file, "r+b") as f:
        f.seek(at)
        b = f.read(1)
        f.seek(at)
        f.write(bytes([b[0] ^ 0x40]))


def test_flipped_byte_in_the_middle_raises_naming_the_offset(disk, procs):
    name, path = filled(disk, procs, 100, 64, capacity=2**16)
    at = where(name, path, "t", payload(0, 50, 64))
    _flip(partition_file(path, name, "t"), at + 10)
    with shmbus.Bus(name, path=path) as bus:
        with pytest.raises(shmbus.CorruptSegmentError, match="offset 50"):
            bus.consumer("t", start="earliest")
        # nothing was changed by the failed open: flip it back and all is there
        _flip(partition_file(path, name, "t"), at + 10)
        with bus.consumer("t", start="earliest") as c:
            assert [parse(m.value) for m in c.poll_batch(200, timeout=1)] == \
                [(0, i) for i in range(100)]


def test_flipped_byte_in_the_last_record_drops_only_it(disk, procs):
    name, path = filled(disk, procs, 100, 64, capacity=2**16)
    _flip(partition_file(path, name, "t"), where(name, path, "t", payload(0, 99, 64)))
    procs.start("read", D + "read_all", bus_name=name, path=path, topic="t")
    got, _, parts = procs.result("read")
    assert got == [(0, i) for i in range(99)] and parts[0]["discarded"] == 1


def test_truncated_file_keeps_its_longest_valid_prefix(disk, procs):
    name, path = filled(disk, procs, 200, 100, capacity=2**16)
    cut = where(name, path, "t", payload(0, 120, 100)) + 50
    os.truncate(partition_file(path, name, "t"), cut)
    procs.start("read", D + "read_all", bus_name=name, path=path, topic="t")
    got, _, parts = procs.result("read")
    assert got == [(0, i) for i in range(120)]
    assert parts[0]["discarded"] == 80 and parts[0]["published"] == 120


def test_bad_paths_and_options(tmp_path, bus):
    with pytest.raises(shmbus.ConfigError, match="parent"):
        shmbus.Bus("x", path=str(tmp_path / "missing" / "bus"))
    (tmp_path / "file").write_text("")
    with pytest.raises(shmbus.ConfigError, match="not a directory"):
        shmbus.Bus("x", path=str(tmp_path / "file"))
    with pytest.raises(shmbus.ConfigError):
        shmbus.Bus("x", path=str(tmp_path / "file" / "bus"))
    with pytest.raises(TypeError):
        shmbus.Bus("x", path=42)
    with pytest.raises(shmbus.ConfigError, match="disk buses"):
        bus.create_topic("t", fsync="always")
    with pytest.raises(shmbus.ConfigError):
        shmbus.Bus("y", path=str(tmp_path / "ok")).create_topic("t", fsync="sometimes")
    assert bus.topics() == []


def _stopped(pid):
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] == "T"


def test_a_recovery_whose_process_dies_is_taken_over(disk, procs):
    """The first opener stops inside recovery holding the topic; a second waits,
    and when the first is killed it recovers the topic itself (and finds the
    damage) instead of opening it unrecovered."""
    name, path = filled(disk, procs, 100, 64, capacity=2**16)
    _flip(partition_file(path, name, "t"), where(name, path, "t", payload(0, 50, 64)) + 10)
    procs.start("first", D + "open_topic", env={"SHMBUS_FAULT": "recover:stop"},
                bus_name=name, path=path, topic="t")
    pid = procs.procs["first"].pid
    deadline = time.monotonic() + 30
    while not _stopped(pid):
        assert time.monotonic() < deadline, "the first opener never reached recovery"
        time.sleep(0.01)
    result = {}

    def second():
        try:
            with shmbus.Bus(name, path=path) as bus:
                bus.consumer("t", start="earliest").close()
        except Exception as e:  # noqa: BLE001 - the test looks at it
            result["error"] = e

    t = threading.Thread(target=second, daemon=True)
    t.start()
    time.sleep(0.3)
    assert t.is_alive(), "the second opener did not wait for the recovery"
    os.kill(pid, signal.SIGKILL)
    t.join(timeout=30)
    assert not t.is_alive()
    assert isinstance(result.get("error"), shmbus.CorruptSegmentError)
    assert "offset 50" in str(result["error"])


def test_a_buffer_changed_while_it_is_sent_still_checksums(disk, procs):
    """Another thread changes a bytearray during send: the record is whatever
    was copied, and its checksum is of that copy, so the topic reopens."""
    name, path = disk
    with shmbus.Bus(name, path=path) as bus:
        bus.create_topic("t", capacity=2**23, max_message_size=2**20)
        buf = bytearray(256 * 1024)
        stop = threading.Event()

        def scribble():
            i = 0
            while not stop.is_set():
                buf[i % len(buf)] ^= 0xFF
                i += 4093

        t = threading.Thread(target=scribble, daemon=True)
        t.start()
        try:
            with bus.producer("t") as p:
                for _ in range(20):
                    p.send(buf)
        finally:
            stop.set()
            t.join(timeout=10)
    procs.start("read", D + "read_all", bus_name=name, path=path, topic="t")
    got, _, parts = procs.result("read")
    assert len(got) == 20 and parts[0]["discarded"] == 0
