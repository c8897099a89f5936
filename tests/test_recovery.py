"""Dead and stopped processes at the C core's fault points, the recovery sweep,
segment creation cut short, PID reuse, fork, and a producer killed at random
200 times.  Real processes, every wait bounded; each outcome exact."""
import json
import mmap
import os
import signal
import subprocess
import sys
import time

import pytest

import shmbus
from _procs import Flag, wait_until

R = "_recovery_workers:"
LIVENESS = 1.0  # the bus's default
MARGIN = 3.0    # scheduling on a loaded 2-core machine
pytestmark = pytest.mark.timeout(120)


def stopped(pid):
    """Whether the process is stopped (state T in /proc)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in "Tt"
    except FileNotFoundError:
        return False


def fault_env(point, action):
    return {"SHMBUS_FAULT": f"{point}:{action}" + (":300" if action == "sleep" else "")}


def run_victim(procs, label, point, action, fname, **kwargs):
    """Start a child armed at point; kill: it dies there; stop: it stops there
    and is continued; sleep: it pauses there.  Returns its result (None when
    it was killed)."""
    p = procs.start(label, R + fname, env=fault_env(point, action), **kwargs)
    if action == "kill":
        assert procs.join(label, timeout=30) == -signal.SIGKILL
        return None
    if action == "stop":
        wait_until(lambda: stopped(p.pid), 30, f"{label} to stop at {point}")
        time.sleep(0.2)
        assert stopped(p.pid)
        os.kill(p.pid, signal.SIGCONT)
    return procs.result(label, timeout=30)


def drain(c, until, timeout):
    """Values polled until `until(values)` holds or the timeout passes."""
    got = []
    end = time.monotonic() + timeout
    while not until(got) and time.monotonic() < end:
        for m in c.poll_batch(100, timeout=0.05):
            got.append(m)
    return got


def group_of(bus, topic, name):
    return next(g for g in bus.stats(topic)["groups"] if g["name"] == name)


# -- each fault point with each action ---------------------------------------------------

ACTIONS = ["kill", "stop", "sleep"]


@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize("point", ["after_claim", "during_copy", "before_commit", "after_commit"])
def test_producer_fault_points(bus, procs, point, action):
    """The others carry on within the liveness timeout; a send cut short before
    its commit is never delivered (nor torn), one cut after it is; a stopped or
    slowed send completes once it goes on."""
    bus.create_topic("t", capacity=2**14)
    with bus.consumer("t", start="earliest") as c, bus.producer("t") as p:
        victim = b"V" * 3000  # long enough to be half copied
        run_victim(procs, "victim", point, action, "send_one", bus_name=bus.name, topic="t",
                   value=victim)
        t0 = time.monotonic()
        p.send(b"after")
        got = drain(c, lambda g: g and g[-1].value == b"after", LIVENESS + MARGIN)
        assert got and got[-1].value == b"after", "the others did not carry on"
        assert time.monotonic() - t0 < LIVENESS + MARGIN
        cut = action == "kill" and point != "after_commit"
        assert [m.value for m in got] == ([b"after"] if cut else [victim, b"after"])
        assert sum(s["recovered_claims"] for s in bus.stats("t")["partitions"]) == int(cut)


@pytest.mark.parametrize("action", ACTIONS)
def test_member_fault_inside_ack(bus, procs, action):
    """Killed between marking its deliveries done and counting them: they stay
    done (acked is at-least-once: never delivered again) and the group's
    committed point moves past them."""
    bus.create_topic("t", capacity=2**14)
    with bus.producer("t") as p:
        p.send_many([b"%d" % i for i in range(10)])
    with bus.consumer("t", group="g", ack="manual", ordering="none", start="earliest") as c:
        out = run_victim(procs, "victim", "inside_ack", action, "take_and_ack", bus_name=bus.name,
                         topic="t", group="g", n=10)
        if out is not None:
            assert out == [b"%d" % i for i in range(10)]
        assert c.poll_batch(10, timeout=0.5) == []
        wait_until(lambda: c.lag() == 0, LIVENESS + MARGIN, "the committed point to move")
    g = group_of(bus, "t", "g")
    assert g["pending"] == 0 and g["delivered"] == 10 and g["redelivered"] == 0
    assert g["acked"] == (0 if action == "kill" else 10)  # a kill there loses the count only


@pytest.mark.parametrize("action", ACTIONS)
def test_member_fault_inside_rebalance(bus, procs, action):
    """A member that took a partition and died (or stopped) before telling the
    group: a live member gets every message, in order per partition, within
    the liveness timeout of the death (or once the stopped one goes on)."""
    bus.create_topic("t", capacity=2**14, partitions=2)
    pr = procs.start("victim", R + "join_and_poll", env=fault_env("rebalance", action),
                     bus_name=bus.name, topic="t", group="g", seconds=0.5)
    if action == "kill":
        assert procs.join("victim", timeout=30) == -signal.SIGKILL
    elif action == "stop":
        wait_until(lambda: stopped(pr.pid), 30, "the member to stop in its rebalance")
    else:
        assert procs.result("victim") == 0
    want = {b"a%d" % i for i in range(5)} | {b"b%d" % i for i in range(5)}
    with bus.consumer("t", group="g", ack="manual", ordering="partition",
                      start="earliest") as c, bus.producer("t") as p:
        p.send_many([b"a%d" % i for i in range(5)], partition=0)
        p.send_many([b"b%d" % i for i in range(5)], partition=1)
        got = []

        def take(seconds):
            end = time.monotonic() + seconds
            while {v for _, v in got} != want and time.monotonic() < end:
                for m in c.poll_batch(10, timeout=0.05):
                    got.append((m.partition, m.value))
                    c.ack(m)
        t0 = time.monotonic()
        if action == "stop":
            take(1.0)  # the stopped member holds a partition: the other flows
            assert {v for _, v in got} != want
            os.kill(pr.pid, signal.SIGCONT)
            procs.result("victim")
        take(LIVENESS + MARGIN)
        assert {v for _, v in got} == want
        if action == "kill":
            assert time.monotonic() - t0 < LIVENESS + MARGIN
    for k, prefix in ((0, b"a"), (1, b"b")):  # first deliveries in order per partition
        firsts = list(dict.fromkeys(v for part, v in got if part == k))
        assert firsts == [prefix + b"%d" % i for i in range(5)]


@pytest.mark.parametrize("action", ACTIONS)
def test_creator_fault_before_the_version(bus, procs, action):
    """A creator killed before writing the version leaves a topic that never
    existed: openers are told at once and the name can be made again; a live
    (stopped) creator makes openers wait up to the init timeout, then fail
    clearly; a slow one is waited for."""
    pr = procs.start("victim", R + "create", env=fault_env("create", action),
                     bus_name=bus.name, topic="t")
    if action == "kill":
        assert procs.join("victim", timeout=30) == -signal.SIGKILL
        t0 = time.monotonic()
        with pytest.raises(shmbus.TopicNotFoundError, match="creator died"):
            bus.producer("t")
        assert time.monotonic() - t0 < 1.0  # no wait: the creator is known dead
        bus.create_topic("t", capacity=4096, partitions=2)
    elif action == "stop":
        wait_until(lambda: stopped(pr.pid), 30, "the creator to stop")
        t0 = time.monotonic()
        with pytest.raises(shmbus.CorruptSegmentError, match="still being created"):
            bus.producer("t")
        assert 1.5 < time.monotonic() - t0 < 2 + MARGIN
        with pytest.raises(shmbus.TopicExistsError):
            bus.create_topic("t", capacity=4096, partitions=2)
        os.kill(pr.pid, signal.SIGCONT)
        assert procs.result("victim") == "created"
    else:
        wait_until(lambda: os.path.exists(f"/dev/shm/shmbus:{bus.name}:t:meta"), 30,
                   "the creator to begin")
        with bus.producer("t") as p:  # waits for the creator to finish
            p.send(b"x")
        assert procs.result("victim") == "created"
    with bus.consumer("t", start="earliest") as c, bus.producer("t") as p:
        p.send(b"y", partition=1)
        assert b"y" in [m.value for m in c.poll_batch(10, timeout=2)]
    assert bus.topic_info("t")["partitions"] == 2


# -- the recovery sweep ----------------------------------------------------------------------

def dead_claims(bus, procs, partitions):
    """One producer killed after its claim in each partition, all at once (a
    producer that opens later takes a dead one's entry, and recovers its claims)."""
    for i in range(partitions):
        procs.start(f"dies{i}", R + "send_one", env={"SHMBUS_FAULT": "after_claim:stop"},
                    bus_name=bus.name, topic="t", value=b"lost", partition=i)
    for i in range(partitions):
        pid = procs.procs[f"dies{i}"].pid
        wait_until(lambda: stopped(pid), 30, "a producer to stop after its claim")
    for i in range(partitions):
        os.kill(procs.procs[f"dies{i}"].pid, signal.SIGKILL)
    for i in range(partitions):
        assert procs.join(f"dies{i}", timeout=30) == -signal.SIGKILL


@pytest.fixture
def slow_bus(bus_name):
    """A bus whose liveness timeout is long: what is recovered at once was the
    sweep's doing, not the lazy recovery that waits for the timeout."""
    b = shmbus.Bus(bus_name, liveness_timeout=60)
    try:
        yield b
    finally:
        b.unlink()
        b.close()


def test_sweep_recovers_dead_producers_claims_at_once(slow_bus, procs):
    bus = slow_bus
    bus.create_topic("t", capacity=2**14, partitions=2)
    with bus.consumer("t", start="earliest") as c, bus.producer("t") as p:
        dead_claims(bus, procs, 2)
        p.send(b"after", partition=0)
        p.send(b"after", partition=1)
        assert c.poll_batch(10, timeout=0) == []  # held behind the dead claims (a wait
        # that timed out would sweep)
        assert bus.sweep() == {"claims": 2, "deliveries": 0, "owners": 0, "groups": 0}
        assert [m.value for m in c.poll_batch(10, timeout=1)] == [b"after", b"after"]
        assert bus.sweep()["claims"] == 0  # idempotent
    stats = bus.stats("t")
    assert [s["recovered_claims"] for s in stats["partitions"]] == [1, 1]


def test_sweep_runs_when_a_process_maps_the_topic(slow_bus, procs):
    bus = slow_bus
    bus.create_topic("t", capacity=2**14)
    with bus.consumer("t", start="earliest") as c, bus.producer("t") as p:
        dead_claims(bus, procs, 1)
        p.send(b"after")
        assert c.poll_batch(10, timeout=0) == []
        with shmbus.Bus(bus.name, liveness_timeout=60) as other, other.consumer("t"):
            pass  # mapping the topic swept it
        assert [m.value for m in c.poll_batch(10, timeout=1)] == [b"after"]
    assert bus.stats("t")["partitions"][0]["recovered_claims"] == 1


def test_sweep_runs_when_a_wait_times_out(bus_name, procs):
    """A consumer waiting behind a dead claim sweeps when its wait's slice ends,
    well before the lazy recovery's liveness timeout."""
    bus = shmbus.Bus(bus_name, liveness_timeout=8)
    try:
        bus.create_topic("t", capacity=2**14)
        with bus.consumer("t", start="earliest") as c, bus.producer("t") as p:
            dead_claims(bus, procs, 1)
            p.send(b"after")
            t0 = time.monotonic()
            got = drain(c, lambda g: g, 8)
            assert [m.value for m in got] == [b"after"]
            assert time.monotonic() - t0 < 5.0
    finally:
        bus.unlink()
        bus.close()


def test_sweep_releases_dead_members_deliveries_and_ownerships(slow_bus, procs, spawn):
    bus = slow_bus
    bus.create_topic("t", capacity=2**14, partitions=2)
    with bus.producer("t") as p:
        for i in range(4):
            p.send(b"%d" % i, partition=i % 2)
    ready = Flag(spawn)
    procs.start("holder", R + "holder", bus_name=bus.name, topic="t", group="g", take=4,
                ready=ready, ordering="partition")
    assert ready.wait(30)
    os.kill(procs.procs["holder"].pid, signal.SIGKILL)
    assert procs.join("holder") == -signal.SIGKILL
    assert bus.sweep() == {"claims": 0, "deliveries": 4, "owners": 2, "groups": 0}
    assert bus.sweep() == {"claims": 0, "deliveries": 0, "owners": 0, "groups": 0}
    g = group_of(bus, "t", "g")
    assert (g["recovered_deliveries"], g["recovered_owners"]) == (4, 2)
    assert [q["owner"] for q in g["partitions"]] == [None, None]
    with bus.consumer("t", group="g", ack="manual", ordering="partition") as c:
        got = drain(c, lambda g: len(g) >= 4, 5)
        assert sorted((m.value, m.delivery_count) for m in got) == \
            [(b"%d" % i, 2) for i in range(4)]
        c.ack(got)


def test_two_sweeps_at_once_recover_each_thing_once(slow_bus, procs):
    bus = slow_bus
    bus.create_topic("t", capacity=2**14, partitions=4)
    with bus.consumer("t", start="earliest"):
        dead_claims(bus, procs, 4)
        for k in range(2):
            procs.start(f"sweep{k}", R + "sweep", bus_name=bus.name)
        a, b = procs.result("sweep0"), procs.result("sweep1")
    # each process's attach swept too: the claims were recovered once in all
    assert a["claims"] + b["claims"] <= 4
    assert sum(s["recovered_claims"] for s in bus.stats("t")["partitions"]) == 4
    assert bus.sweep()["claims"] == 0


def test_a_sweep_killed_midway_is_finished_by_the_next(slow_bus, procs):
    bus = slow_bus
    bus.create_topic("t", capacity=2**14, partitions=3)
    with bus.consumer("t", start="earliest") as c:
        dead_claims(bus, procs, 3)
        procs.start("sweeper", R + "sweep", env={"SHMBUS_FAULT": "sweep:kill"}, bus_name=bus.name)
        assert procs.join("sweeper", timeout=30) == -signal.SIGKILL
        done = [s["recovered_claims"] for s in bus.stats("t")["partitions"]]
        assert done == [1, 0, 0]  # died after the first partition's recovery
        assert bus.sweep()["claims"] == 2
        assert [s["recovered_claims"] for s in bus.stats("t")["partitions"]] == [1, 1, 1]
        with bus.producer("t") as p:
            for i in range(3):
                p.send(b"after", partition=i)
        assert len(c.poll_batch(10, timeout=1)) == 3


def test_gc_command_sweeps(slow_bus, procs):
    bus = slow_bus
    bus.create_topic("t", capacity=2**14)
    with bus.consumer("t", start="earliest"):
        dead_claims(bus, procs, 1)
        out = subprocess.run([sys.executable, "-m", "shmbus", "gc", bus.name, "--json"],
                             capture_output=True, text=True, timeout=60)
    found = json.loads(out.stdout)["in_use"]
    assert found[bus.name]["claims"] == 1
    assert bus.stats("t")["partitions"][0]["recovered_claims"] == 1


# -- pid reuse, fork -------------------------------------------------------------------------

def test_a_live_pid_in_a_dead_members_record_does_not_keep_it_alive(slow_bus, procs, spawn):
    """Liveness is the kernel-released lock, never the pid: a dead member whose
    pid now names a live process (here: this one) is still dead."""
    bus = slow_bus
    bus.create_topic("t", capacity=2**14)
    with bus.producer("t") as p:
        p.send_many([b"a", b"b"])
    ready = Flag(spawn)
    procs.start("holder", R + "holder", bus_name=bus.name, topic="t", group="g", take=2, ready=ready)
    assert ready.wait(30)
    os.kill(procs.procs["holder"].pid, signal.SIGKILL)
    assert procs.join("holder") == -signal.SIGKILL
    dead = procs.procs["holder"].pid.to_bytes(4, "little")
    with open(f"/dev/shm/shmbus:{bus.name}:t:meta", "r+b") as f, \
            mmap.mmap(f.fileno(), 0) as mm:
        # a member record starts on a cache line with its pid
        at = [k for k in range(0, len(mm), 64) if mm[k:k + 4] == dead]
        assert len(at) == 1
        mm[at[0]:at[0] + 4] = os.getpid().to_bytes(4, "little")
    assert bus.sweep()["deliveries"] == 2


def test_a_forked_child_cannot_use_its_parents_handles(bus, procs):
    bus.create_topic("t", capacity=2**14)
    procs.start("parent", R + "use_after_fork", bus_name=bus.name, topic="t")
    out = procs.result("parent")
    assert out["status"] == 0
    for line in out["seen"]:
        assert "belongs to process" in line and "open a new" in line, line
    assert out["values"] == [b"from the child", b"from the parent"]


def test_a_dead_parents_claim_is_recovered_while_its_forked_child_lives(bus, procs, spawn):
    bus.create_topic("t", capacity=2**14)
    child = spawn.RawValue("i", 0)
    with bus.consumer("t", start="earliest") as c:
        procs.start("parent", R + "forked_claim", env={"SHMBUS_FAULT": "after_claim:kill"},
                    bus_name=bus.name, topic="t", child_pid=child)
        assert procs.join("parent", timeout=30) == -signal.SIGKILL
        try:
            assert child.value and os.path.exists(f"/proc/{child.value}")
            with bus.producer("t") as p:
                p.send(b"after")
            got = drain(c, lambda g: g, LIVENESS + MARGIN)
            assert [m.value for m in got] == [b"after"]
        finally:
            if child.value:
                os.kill(child.value, signal.SIGKILL)
    assert bus.stats("t")["partitions"][0]["recovered_claims"] == 1


# -- a producer killed at random -----------------------------------------------------------

@pytest.mark.timeout(240)
def test_200_random_kills_of_a_producer(bus, procs, spawn):
    """Every send that returned is delivered, in order, untorn; nothing waits
    on the dead beyond the liveness timeout."""
    import _recovery_workers as rw
    rounds = 200
    bus.create_topic("t", capacity=2**16)
    returned = spawn.RawArray("q", rounds)
    values = []
    with bus.consumer("t", start="earliest") as c:
        p = procs.start("killer", R + "kill_rounds", bus_name=bus.name, topic="t", rounds=rounds,
                        returned=returned, seed=5)
        end = time.monotonic() + 180
        while p.exitcode is None and time.monotonic() < end:
            values += [m.value for m in c.poll_batch(1000, timeout=0.05)]
        assert procs.result("killer") == rounds
        values += [m.value for m in drain(c, lambda g: False, LIVENESS + MARGIN)]
    assert rw.check_rounds(values, list(returned)) == []
    stats = bus.stats("t")["partitions"][0]
    assert stats["published"] == len(values) + stats["recovered_claims"]
