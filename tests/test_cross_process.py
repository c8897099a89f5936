"""Cross-process behaviour with real processes (spawn start method).

Children run the functions of ``_workers`` (importable because pytest puts this
folder on sys.path and spawn hands sys.path to its children).  Every wait here is
bounded; every child is killed and joined by the ``procs`` fixture, whatever
happens.  Nothing asserts on speed: only on bounded waits with wide margins.
"""
import os
import signal
import sys
import threading
import time
from array import array

import psutil
import pytest

import shmbus

import _workers
from _procs import Flag, wait_ready, wait_until
from _workers import payload

LIVENESS = 1.0   # the bus's default liveness timeout
MARGIN = 4.0     # slack for a shared, noisy 2-core machine


def part_stats(bus, topic, i=0):
    return bus.stats(topic)["partitions"][i]


def ids_of(report):
    a = array("Q")
    a.frombytes(report["ids"])
    return [(x >> 32, x & 0xFFFFFFFF) for x in a]


def assert_clean(report, who):
    assert report["n_torn"] == 0, f"{who}: torn messages {report['torn']}"
    assert report["offset_errors"] == [], f"{who}: offsets went backwards {report['offset_errors']}"


# -- 1. fan-out ---------------------------------------------------------------------


@pytest.mark.timeout(90)
def test_fan_out_every_subscriber_gets_every_message_in_order(bus, bus_name, procs, spawn):
    n = 20_000
    bus.create_topic("fan", capacity=64 * 1024)  # small: the ring laps many times
    modes = ["poll", "batch", "iter"]
    ready = [spawn.Event() for _ in modes]
    for i, mode in enumerate(modes):
        procs.start(f"sub{i}", "subscriber", bus_name=bus_name, topic="fan", expected=n,
                    ready=ready[i], mode=mode, deadline=50.0)
    wait_ready(*ready)
    go = spawn.Event()
    procs.start("prod", "producer", bus_name=bus_name, topic="fan", pid=1, count=n, go=go)
    go.set()

    sent = procs.result("prod")
    assert sent["accepted"] == n and sent["none"] == 0 and sent["all_offsets"]
    want = [(1, s) for s in range(n)]
    for i, mode in enumerate(modes):
        r = procs.result(f"sub{i}")
        assert_clean(r, f"subscriber {mode}")
        got = ids_of(r)
        assert len(got) == n, f"subscriber {mode} got {len(got)} of {n}"
        assert got == want, f"subscriber {mode}: first difference at {_first_diff(got, want)}"
        assert r["extra"] == 0, f"subscriber {mode} got {r['extra']} messages too many"
    assert part_stats(bus, "fan")["published"] == n


def _first_diff(a, b):
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i, x, y
    return min(len(a), len(b)), None, None


# -- 2. many producers --------------------------------------------------------------


@pytest.mark.timeout(90)
@pytest.mark.parametrize("partitions", [1, 4])
def test_many_producers_per_producer_order_nothing_missing_no_duplicates(
        bus, bus_name, procs, spawn, partitions):
    per = 5_000
    methods = ["send", "send_headers", "send_many", "send"]
    bus.create_topic("multi", partitions=partitions, capacity=64 * 1024)
    ready = [spawn.Event(), spawn.Event()]
    for i, mode in enumerate(["poll", "batch"]):
        procs.start(f"sub{i}", "subscriber", bus_name=bus_name, topic="multi",
                    expected=per * len(methods), ready=ready[i], mode=mode, deadline=50.0)
    wait_ready(*ready)
    go = spawn.Event()
    for pid, method in enumerate(methods):
        # with several partitions a key per producer keeps its messages in one
        # partition, where order holds; with one partition all of them interleave
        key = f"producer-{pid}" if partitions > 1 else None
        procs.start(f"prod{pid}", "producer", bus_name=bus_name, topic="multi", pid=pid,
                    count=per, go=go, method=method, key=key)
    go.set()
    for pid in range(len(methods)):
        sent = procs.result(f"prod{pid}")
        assert sent["accepted"] == per and sent["none"] == 0
    total = sum(s["published"] for s in bus.stats("multi")["partitions"])
    assert total == per * len(methods)
    for i in range(2):
        r = procs.result(f"sub{i}")
        assert_clean(r, f"subscriber {i}")
        got = ids_of(r)
        assert r["extra"] == 0
        assert len(got) == len(set(got)), f"subscriber {i} got duplicates"
        for pid in range(len(methods)):
            seqs = [s for p, s in got if p == pid]
            assert seqs == list(range(per)), (
                f"subscriber {i}, producer {pid}: {len(seqs)} messages, first difference at "
                f"{_first_diff(seqs, list(range(per)))}")
        assert {p for p, _ in got} == set(range(len(methods)))
        assert r["partitions"] == list(range(partitions))  # the keys spread over all of them


# -- 3. backpressure across processes -------------------------------------------------


@pytest.mark.timeout(60)
def test_block_slow_consumer_small_ring_exact_accounting(bus, bus_name, procs, spawn):
    n = 300
    bus.create_topic("bp", capacity=4096, on_full="block")
    ready, go, done = spawn.Event(), spawn.Event(), spawn.Event()
    procs.start("cons", "drain_consumer", bus_name=bus_name, topic="bp", ready=ready, go=go,
                done=done, per_message_sleep=0.001)
    wait_ready(ready)
    pgo = spawn.Event()
    procs.start("prod", "producer", bus_name=bus_name, topic="bp", pid=0, count=n, go=pgo,
                size=56, timeout=30.0)
    pgo.set()
    # the consumer reads nothing yet: the producer must end up blocked
    wait_until(lambda: part_stats(bus, "bp")["blocked_sends"] >= 1, 30, "a blocked send")
    assert part_stats(bus, "bp")["published"] < n
    go.set()
    sent = procs.result("prod")
    done.set()
    assert sent["accepted"] == n and sent["none"] == 0 and sent["all_offsets"]
    assert sent["offsets"] == [(0, i) for i in range(n)]
    r = procs.result("cons")
    assert r["timed_out"] is None
    assert_clean(r, "consumer")
    assert ids_of(r) == [(0, i) for i in range(n)]  # accepted == delivered, in order
    st = part_stats(bus, "bp")
    assert st["published"] == n and st["dropped_full"] == 0 and st["blocked_sends"] >= 1


@pytest.mark.timeout(60)
def test_drop_newest_stopped_consumer_exact_accounting(bus, bus_name, procs, spawn):
    bus.create_topic("dn", capacity=4096, on_full="drop_newest")
    ready, done = spawn.Event(), spawn.Event()
    cons = procs.start("cons", "drain_consumer", bus_name=bus_name, topic="dn", ready=ready,
                       done=done)
    wait_ready(ready)
    os.kill(cons.pid, signal.SIGSTOP)  # a stalled consumer: alive, holding the ring
    try:
        phase1_done, phase2_go = spawn.Event(), spawn.Event()
        procs.start("prod", "drop_newest_producer", bus_name=bus_name, topic="dn",
                    first_phase=100, second_phase=300, batch=20, phase1_done=phase1_done,
                    phase2_go=phase2_go)
        wait_ready(phase1_done)
        st = part_stats(bus, "dn")
        assert 0 < st["published"] < 100  # the ring filled: the rest was refused
        assert st["dropped_full"] == 100 - st["published"]
    finally:
        os.kill(cons.pid, signal.SIGCONT)
    phase2_go.set()
    r = procs.result("prod")
    done.set()
    assert set(r["kinds"]) == {"NoneType", "Offset"}  # send returns an Offset or None
    assert r["phase1"]["accepted"] + r["phase1"]["refused"] == 100
    assert r["phase1"]["refused"] > 0
    accepted, refused = r["accepted"], r["refused"]
    assert len(accepted) + refused == r["attempted"]
    st = part_stats(bus, "dn")
    assert st["dropped_full"] == refused, "None returns + send_many shortfalls == dropped_full"
    assert st["published"] == len(accepted)
    c = procs.result("cons")
    assert c["timed_out"] is None
    assert_clean(c, "consumer")
    assert ids_of(c) == [(0, s) for s in accepted]  # delivered == accepted, in order


@pytest.mark.timeout(60)
def test_error_raises_busfull_at_once_and_loses_nothing_accepted(bus, bus_name, procs, spawn):
    bus.create_topic("er", capacity=4096, on_full="error")
    ready, go, done = spawn.Event(), spawn.Event(), spawn.Event()
    procs.start("cons", "drain_consumer", bus_name=bus_name, topic="er", ready=ready, go=go,
                done=done)
    wait_ready(ready)
    procs.start("prod", "error_producer", bus_name=bus_name, topic="er", extra_attempts=5)
    r = procs.result("prod")
    assert r["accepted"] > 0
    assert r["first_err"] is not None, "the ring never filled"
    # "at once": no send ever waited for room (and the producer has no timeout,
    # so a wait would not have ended by itself)
    assert r["first_err"] < MARGIN
    assert [k for k, _ in r["later"]] == ["BusFull"] * 5
    assert all(t < MARGIN for _, t in r["later"])
    st = part_stats(bus, "er")
    assert st["published"] == r["accepted"] and st["dropped_full"] == 0
    assert st["blocked_sends"] == 0
    go.set()
    done.set()
    c = procs.result("cons")
    assert c["timed_out"] is None
    assert_clean(c, "consumer")
    assert ids_of(c) == [(0, s) for s in range(r["accepted"])]


@pytest.mark.timeout(60)
def test_block_with_timeout_raises_busfull_after_about_the_timeout(bus, bus_name, procs, spawn):
    bus.create_topic("to", capacity=4096, on_full="block")
    ready, go, done = spawn.Event(), spawn.Event(), spawn.Event()
    procs.start("cons", "drain_consumer", bus_name=bus_name, topic="to", ready=ready, go=go,
                done=done)
    wait_ready(ready)
    procs.start("prod", "timeout_producer", bus_name=bus_name, topic="to",
                producer_timeout=0.5, send_timeout=0.3)
    r = procs.result("prod")
    assert r["accepted"] > 0
    assert r["waited"] is not None
    assert 0.5 - 0.02 <= r["waited"] < 0.5 + MARGIN, r["waited"]
    kind, waited = r["override"]
    assert kind == "BusFull"
    assert 0.3 - 0.02 <= waited < 0.3 + MARGIN, waited
    st = part_stats(bus, "to")
    assert st["published"] == r["accepted"] and st["blocked_sends"] >= 2
    go.set()
    done.set()
    c = procs.result("cons")
    assert_clean(c, "consumer")
    assert ids_of(c) == [(0, s) for s in range(r["accepted"])]  # nothing lost, nothing extra


# -- 4. keys --------------------------------------------------------------------------

KEYS = ([f"user-{i}" for i in range(100)] + ["a", "ab", "abc", "abcd", "abcde",
        "ключ", "clé-é", "キー", "🙂🙂", "x" * 1024, "\x00", " "])


def kafka_partition(key: bytes, partitions: int) -> int:
    """Kafka's default partitioner: toPositive(murmur2(key)) % partitions."""
    m, mask = 0x5BD1E995, 0xFFFFFFFF
    h = (0x9747B28C ^ len(key)) & mask
    for i in range(len(key) // 4):
        k = int.from_bytes(key[4 * i:4 * i + 4], "little")
        k = (k * m) & mask
        k ^= k >> 24
        k = (k * m) & mask
        h = ((h * m) & mask) ^ k
    rest, r = len(key) & ~3, len(key) % 4
    if r == 3:
        h ^= key[rest + 2] << 16
    if r >= 2:
        h ^= key[rest + 1] << 8
    if r >= 1:
        h ^= key[rest]
        h = (h * m) & mask
    h ^= h >> 13
    h = (h * m) & mask
    h ^= h >> 15
    return (h & 0x7FFFFFFF) % partitions


@pytest.mark.timeout(60)
def test_same_key_same_partition_in_two_interpreters(bus, bus_name, procs):
    for i, seed in enumerate(["1", "2"]):  # two different salts for str hash()
        # a topic each: a child tells where send_many went by the partitions that grew
        bus.create_topic(f"keys{i}", partitions=8, capacity=2**20)
        procs.start(f"k{i}", "key_partitions", env={"PYTHONHASHSEED": seed}, bus_name=bus_name,
                    topic=f"keys{i}", keys=KEYS)
    a, b = procs.result("k0"), procs.result("k1")
    assert (a["hashseed"], b["hashseed"]) == ("1", "2")
    assert a["hash"] != b["hash"], "the two children should have differently salted hash()"
    assert a["str"] == b["str"], "a key landed on different partitions in two interpreters"
    assert a["bytes"] == b["bytes"]
    assert a["str"] == a["bytes"], "a str key must land where its UTF-8 bytes land"
    assert a["again"] == a["str"] and b["again"] == b["str"]
    assert a["many"] == [[p] for p in a["str"][:8]], "send_many must route by the key too"
    assert len(set(a["str"])) > 1, "100+ keys all on one partition: no hashing at all?"
    # the comment in the core promises Kafka's partitioner
    assert a["str"] == [kafka_partition(k.encode(), 8) for k in KEYS]


@pytest.mark.timeout(60)
def test_empty_key_is_a_key_too(bus, bus_name, procs):
    bus.create_topic("keys", partitions=8, capacity=2**20)
    procs.start("k", "key_partitions", bus_name=bus_name, topic="keys", keys=["", "", ""])
    r = procs.result("k")
    assert len(set(r["str"] + r["bytes"] + r["again"])) == 1, r
    with bus.consumer("keys", start="earliest") as c:
        m = c.poll(timeout=5.0)
        assert m is not None and m.key == b""


# -- 5. an idle consumer ----------------------------------------------------------------


@pytest.mark.timeout(60)
def test_blocked_consumer_uses_no_measurable_cpu(bus, bus_name, procs, spawn):
    bus.create_topic("idle")
    modes = ["none", "loop"]  # poll(timeout=None) / a loop of poll(1.0)
    ready = [spawn.Event() for _ in modes]
    for i, mode in enumerate(modes):
        procs.start(f"w{i}", "blocked_poller", bus_name=bus_name, topic="idle", ready=ready[i],
                    mode=mode)
    wait_ready(*ready)
    handles = [psutil.Process(procs.procs[f"w{i}"].pid) for i in range(len(modes))]
    time.sleep(0.3)  # let them get from the ready signal into the wait
    before = [sum(h.cpu_times()[:2]) for h in handles]
    t0 = time.monotonic()
    time.sleep(2.0)
    used = [sum(h.cpu_times()[:2]) - b for h, b in zip(handles, before)]
    wall = time.monotonic() - t0
    print(f"CPU used while blocked over {wall:.2f} s: {dict(zip(modes, used))}")
    for mode, u in zip(modes, used):
        assert u < 0.01 * wall, f"consumer blocked in mode {mode!r} used {u:.3f} s CPU in {wall:.2f} s"
    # and they still wake for a message
    with bus.producer("idle") as p:
        p.send(b"wake up")
    for i in range(len(modes)):
        assert procs.result(f"w{i}", timeout=10) == b"wake up"


# -- 6. a producer killed mid-send ----------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("point", ["after_claim", "during_copy", "before_commit", "after_commit"])
def test_producer_killed_mid_send_does_not_hang_subscribers(bus, bus_name, procs, spawn, point):
    bus.create_topic("f", capacity=64 * 1024)
    ready = spawn.Event()
    procs.start("sub", "fault_subscriber", bus_name=bus_name, topic="f", ready=ready,
                last_value=b"after")
    wait_ready(ready)
    victim_value = payload(9, 1, 4000)  # long enough that a half copy would show
    with bus.producer("f") as p:
        assert p.send(b"before") == shmbus.Offset(0, 0)
        procs.start("victim", "faulty_producer", bus_name=bus_name, topic="f",
                    fault=f"{point}:kill", value=victim_value)
        assert procs.join("victim", timeout=30) == -signal.SIGKILL
        t_send = time.monotonic()
        assert p.send(b"after") == shmbus.Offset(0, 2)
    got = procs.result("sub", timeout=LIVENESS + MARGIN + 10)
    values = [v for v, _, _, _ in got]
    offsets = [o for _, _, o, _ in got]
    if point == "after_commit":  # it was published before the kill: it must arrive whole
        assert values == [b"before", victim_value, b"after"]
        assert offsets == [0, 1, 2]
    else:  # the open claim is recovered; never a torn message
        assert values == [b"before", b"after"]
        assert offsets == [0, 2]
    t_recv = got[-1][3]
    assert t_recv - t_send < LIVENESS + MARGIN, f"'after' took {t_recv - t_send:.2f} s"
    st = part_stats(bus, "f")
    assert st["published"] == 3
    assert st["recovered_claims"] == (0 if point == "after_commit" else 1)


@pytest.mark.timeout(60)
def test_stopped_producer_keeps_its_claim(bus, bus_name, procs, spawn):
    """A claimer that lives (here: stopped between claim and commit) is never
    robbed of its claim, however long it takes; once continued it commits, and
    everything arrives whole and in order."""
    bus.create_topic("f", capacity=64 * 1024)
    ready = spawn.Event()
    procs.start("sub", "fault_subscriber", bus_name=bus_name, topic="f", ready=ready,
                last_value=b"after", liveness=0.2)
    wait_ready(ready)
    victim_value = payload(9, 1, 4000)
    with bus.producer("f") as p:
        assert p.send(b"before") == shmbus.Offset(0, 0)
        victim = procs.start("victim", "faulty_producer", bus_name=bus_name, topic="f",
                             fault="before_commit:stop", value=victim_value)
        wait_until(lambda: psutil.Process(victim.pid).status() == psutil.STATUS_STOPPED, 30,
                   "the producer to stop at its fault point")
        assert p.send(b"after") == shmbus.Offset(0, 2)
        time.sleep(1.0)  # five times the subscriber's liveness timeout
        assert part_stats(bus, "f")["recovered_claims"] == 0
        t_cont = time.monotonic()
        os.kill(victim.pid, signal.SIGCONT)
        assert procs.result("victim") == dict(survived=True, offset=(0, 1))
    got = procs.result("sub", timeout=MARGIN + 10)
    assert [v for v, _, _, _ in got] == [b"before", victim_value, b"after"]
    assert [o for _, _, o, _ in got] == [0, 1, 2]
    assert got[1][3] >= t_cont and got[2][3] >= t_cont  # nothing was handed out past the claim
    assert part_stats(bus, "f")["recovered_claims"] == 0


@pytest.mark.timeout(60)
def test_producer_killed_mid_batch_does_not_hang_subscribers(bus, bus_name, procs, spawn):
    liveness, batch = 0.2, 50
    bus.create_topic("f", capacity=64 * 1024)
    ready = spawn.Event()
    procs.start("sub", "fault_subscriber", bus_name=bus_name, topic="f", ready=ready,
                last_value=b"after", liveness=liveness)
    wait_ready(ready)
    with bus.producer("f") as p:
        procs.start("victim", "faulty_producer", bus_name=bus_name, topic="f",
                    fault="after_claim:kill", value=b"v" * 100, batch=batch)
        assert procs.join("victim", timeout=30) == -signal.SIGKILL
        assert p.send(b"after") == shmbus.Offset(0, batch)
    got = procs.result("sub", timeout=liveness + MARGIN)
    assert [v for v, _, _, _ in got] == [b"after"]
    assert part_stats(bus, "f")["recovered_claims"] == batch


@pytest.mark.timeout(60)
def test_dead_claim_space_is_freed(bus, bus_name, procs, spawn):
    liveness = 0.2
    bus.create_topic("f", capacity=4096, on_full="block")
    ready = spawn.Event()
    procs.start("sub", "fault_subscriber", bus_name=bus_name, topic="f", ready=ready,
                last_value=b"after", liveness=liveness)
    wait_ready(ready)
    with bus.producer("f", timeout=liveness + MARGIN) as p:
        procs.start("victim", "faulty_producer", bus_name=bus_name, topic="f",
                    fault="after_claim:kill", value=b"v" * 3000)
        assert procs.join("victim", timeout=30) == -signal.SIGKILL
        try:
            off = p.send(b"after" + b"." * 1995)  # fits only once the dead claim's bytes are free
        except shmbus.BusFull:
            pytest.fail(f"still full {liveness + MARGIN} s after the claimer died, with no "
                        f"live message in the ring: {part_stats(bus, 'f')}")
        assert off == shmbus.Offset(0, 1)
        p.send(b"after")
    got = procs.result("sub", timeout=MARGIN + 10)
    assert [o for _, _, o, _ in got] == [1, 2]


# -- 7. a consumer killed while a producer is blocked ------------------------------------


@pytest.mark.timeout(60)
def test_consumer_killed_unblocks_a_blocked_producer(bus, bus_name, procs, spawn):
    n = 200
    bus.create_topic("dead", capacity=4096, on_full="block")
    ready, stop = spawn.Event(), Flag(spawn)
    victim = procs.start("victim", "idle_consumer", bus_name=bus_name, topic="dead",
                         ready=ready, stop=stop)
    wait_ready(ready)
    live = bus.consumer("dead", start="latest")
    try:
        sent = spawn.Value("q", 0)
        procs.start("prod", "progress_producer", bus_name=bus_name, topic="dead", count=n,
                    sent=sent)
        got = []

        def drain():
            while True:
                m = live.poll(timeout=0.05)
                if m is None:
                    return
                got.append(m.value)

        # the live consumer reads everything; the victim holds the ring: the producer stalls
        wait_until(lambda: part_stats(bus, "dead")["blocked_sends"] >= 1, 30, "a blocked send")
        stuck = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            drain()
            v = sent.value
            time.sleep(0.3)
            drain()
            if sent.value == v:
                stuck = v
                break
        assert stuck is not None and 0 < stuck < n, f"producer not stalled (sent {sent.value})"

        victim.kill()
        t_kill = time.monotonic()
        assert procs.join("victim") == -signal.SIGKILL
        t_resumed = None
        deadline = time.monotonic() + LIVENESS + MARGIN + 20
        while len(got) < n and time.monotonic() < deadline:
            m = live.poll(timeout=0.1)
            if m is not None:
                got.append(m.value)
            if t_resumed is None and sent.value > stuck:
                t_resumed = time.monotonic()
        assert t_resumed is not None, "the producer never continued"
        assert t_resumed - t_kill < LIVENESS + MARGIN, f"continued after {t_resumed - t_kill:.2f} s"
        r = procs.result("prod")
        assert r["offsets"] == n
        assert [_workers.parse(v) for v in got] == [(0, s) for s in range(n)]
    finally:
        live.close()


@pytest.mark.timeout(60)
def test_consumer_killed_stops_holding_back_non_blocking_producers(bus, bus_name, procs, spawn):
    bus.create_topic("dead", capacity=4096, on_full="drop_newest")
    ready, stop = spawn.Event(), Flag(spawn)
    victim = procs.start("victim", "idle_consumer", bus_name=bus_name, topic="dead",
                         ready=ready, stop=stop)
    wait_ready(ready)
    with bus.consumer("dead", start="latest") as live, \
            bus.producer("dead") as dropping, bus.producer("dead", on_full="error") as raising:

        def try_send(p, v):
            try:
                return p.send(v)
            except shmbus.BusFull:
                return None

        accepted = 0
        while try_send(dropping, payload(0, accepted, 56)) is not None:
            accepted += 1
        assert accepted > 0
        while live.poll(timeout=0.05) is not None:
            pass
        # the victim holds the ring
        assert try_send(dropping, b"x") is None and try_send(raising, b"x") is None
        victim.kill()
        t_kill = time.monotonic()
        assert procs.join("victim") == -signal.SIGKILL
        ok = {}
        while time.monotonic() - t_kill < LIVENESS + MARGIN and len(ok) < 2:
            for name, p in (("drop_newest", dropping), ("error", raising)):
                if name not in ok and try_send(p, b"after") is not None:
                    ok[name] = time.monotonic() - t_kill
            while live.poll(timeout=0) is not None:
                pass
            time.sleep(0.05)
        assert set(ok) == {"drop_newest", "error"}, (
            f"still full {LIVENESS + MARGIN} s after the only other consumer died (sent after: "
            f"{ok}): {part_stats(bus, 'dead')}")


@pytest.mark.timeout(60)
def test_what_a_departed_subscriber_consumed_is_not_delivered_again(bus, bus_name, procs, spawn):
    n = 10
    outcome = {}
    for topic, observe in (("plain", False), ("observed", True)):
        bus.create_topic(topic, capacity=4096)
        ready, consumed, leave = spawn.Event(), spawn.Event(), spawn.Event()
        procs.start(topic, "consume_then_leave", bus_name=bus_name, topic=topic, ready=ready,
                    expected=n, consumed=consumed, leave=leave)
        wait_ready(ready)
        with bus.producer(topic) as p:
            for i in range(n):
                p.send(payload(0, i, 56))
        wait_ready(consumed)
        if observe:
            bus.stats(topic)  # a monitor looks at the topic while the subscriber is there
        leave.set()
        r = procs.result(topic)
        assert r["offsets"] == list(range(n)) and not r["extra"] and r["lag"] == 0
        assert procs.join(topic) == 0
        with bus.consumer(topic, start="earliest") as late:
            outcome[topic] = [m.offset for m in late.poll_batch(max_messages=100, timeout=0.3)]
    assert outcome["plain"] == outcome["observed"], f"bus.stats() changed what was kept: {outcome}"
    assert outcome["plain"] == [], "messages every group had consumed were delivered again"


# -- 8. close from another thread --------------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("stream", [False, True], ids=["empty", "streaming"])
def test_close_from_another_thread_ends_iteration_quietly(bus, bus_name, procs, spawn, stream):
    bus.create_topic("cl", capacity=64 * 1024)
    c = bus.consumer("cl", start="latest")
    stop = Flag(spawn)
    try:
        if stream:
            ready = spawn.Event()
            procs.start("prod", "stream_producer", bus_name=bus_name, topic="cl", stop=stop,
                        ready=ready)
            wait_ready(ready)
            first = c.poll(timeout=10.0)
            assert first is not None
        closer = threading.Timer(0.5, c.close)
        closer.daemon = True
        n = 0
        t0 = time.monotonic()
        closer.start()
        released = 0
        for msg in c:  # a hang here is caught by the test's timeout
            n += 1
            try:
                value = msg.value
            except shmbus.MessageReleasedError:
                # close() from the other thread released the message in hand
                assert c.closed
                released += 1
                continue
            assert _workers.parse(value) == (7, msg.offset)
        took = time.monotonic() - t0
        closer.join(5.0)
        assert took < 0.5 + MARGIN
        assert c.closed and released <= 1
        if stream:
            # (what later polls hand out here is test_close_landing_inside_a_poll's business)
            assert n > 0
        else:
            assert n == 0
            with pytest.raises(shmbus.ClosedError):
                c.poll(timeout=0)
    finally:
        stop.set()
        c.close()
    if stream:
        assert procs.result("prod", timeout=30) > 0


@pytest.mark.timeout(30)
def test_close_from_another_thread_in_the_race_window_ends_iteration_quietly(bus):
    """Forces one legal interleaving: another thread runs close() just as the
    iterator calls into the consumer's fetch (after it saw the consumer open)."""
    from shmbus import _consumer
    fetch = getattr(_consumer.Consumer, "_fetch", None)
    if fetch is None:
        pytest.skip("the internal hook point (_fetch) is gone")
    bus.create_topic("race")
    c = bus.consumer("race")
    fired = []

    def tracer(frame, event, arg):
        if event == "call" and frame.f_code is fetch.__code__ and not fired:
            fired.append(1)
            t = threading.Thread(target=c.close)
            t.start()
            t.join(5.0)
        return None

    old = sys.gettrace()
    sys.settrace(tracer)
    try:
        for _ in c:
            pass
    finally:
        sys.settrace(old)
        c.close()
    assert fired


@pytest.mark.timeout(30)
def test_close_landing_inside_a_poll_hands_out_nothing_stale(bus, monkeypatch):
    """Forces one legal interleaving: another thread runs close() just as the core
    hands deliveries back to a poll in progress.  Afterwards, no message may be
    handed out, and none may read bytes that are no longer its own."""
    from shmbus import _consumer
    core_poll = getattr(_consumer, "_poll_wait", None)
    if core_poll is None:
        pytest.skip("the internal hook point (_poll_wait) is gone")
    bus.create_topic("race", capacity=4096)
    c = bus.consumer("race")
    other = bus.consumer("race")  # a second subscriber that keeps reading
    sent = {}
    with bus.producer("race", timeout=5.0) as p:
        for i in range(10):
            v = payload(1, i, 48)
            sent[p.send(v).offset] = v
        fired = []

        def poll_then_close(*args):
            n = core_poll(*args)
            if n > 0 and not fired:
                fired.append(n)
                t = threading.Thread(target=c.close)
                t.start()
                t.join(5.0)
            return n

        monkeypatch.setattr(_consumer, "_poll_wait", poll_then_close)
        m0 = c.poll(timeout=1.0)
        monkeypatch.undo()
        assert fired and c.closed
        # the other subscriber reads on and producers lap the ring
        for i in range(10, 60):
            p.send(payload(1, i, 200))
            while other.poll(timeout=0) is not None:
                pass
        other.close()
    if m0 is not None:
        try:
            assert m0.value == sent[m0.offset], "a message returned by the poll changed under it"
        except shmbus.MessageReleasedError:
            pass
    with pytest.raises(shmbus.ClosedError):
        m = c.poll(timeout=0)
        if m is not None:
            raise AssertionError(f"a closed consumer handed out offset {m.offset}; its value now "
                                 f"parses as {_workers.parse(m.value)}, sent as {(1, m.offset)}")


@pytest.mark.timeout(60)
def test_a_bus_passed_to_a_spawned_child_opens_the_same_bus(bus, spawn):
    bus.create_topic("t", capacity=2**16)
    with bus.consumer("t") as c:
        child = spawn.Process(target=_workers.send_numbers_on, args=(bus, "t", 50))
        child.start()
        try:
            got = [c.poll(timeout=10.0).value for _ in range(50)]
        finally:
            child.join(10)
            if child.is_alive():
                child.kill()
        assert child.exitcode == 0
        assert got == [b"%d" % i for i in range(50)]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("case", ["untethered", "drop_oldest"])
def test_stopped_reader_never_slows_the_producer_and_learns_what_it_lost(bus, bus_name, procs,
                                                                        spawn, case):
    """A stopped reader a producer may lap (untethered beside a tethered reader
    that keeps up, or tethered on a drop_oldest topic) does not hold a blocking
    producer back; once it runs again, what it got plus what it was told it lost
    is what was sent."""
    count = 20000
    drop_oldest = case == "drop_oldest"
    bus.create_topic("t", capacity=2**16, on_full="drop_oldest" if drop_oldest else "block")
    ready_r, ready_d, done, go = spawn.Event(), spawn.Event(), spawn.Event(), spawn.Event()
    # one more at the end: a lapped reader learns what it lost from its next message
    reader = procs.start("reader", "lossy_reader", bus_name=bus_name, topic="t",
                         count=count + 1, ready=ready_r, tethered=drop_oldest)
    if not drop_oldest:
        procs.start("drain", "drain_consumer", bus_name=bus_name, topic="t", ready=ready_d,
                    done=done)
        wait_ready(ready_d)
    wait_ready(ready_r)
    os.kill(reader.pid, signal.SIGSTOP)
    try:
        procs.start("producer", "producer", bus_name=bus_name, topic="t", pid=1, count=count,
                    go=go, timeout=3.0)  # BusFull after 3 s if the reader held it back
        go.set()
        assert procs.result("producer")["accepted"] == count
        done.set()
        if not drop_oldest:
            assert len(procs.result("drain")["ids"]) == 8 * count
        with bus.producer("t") as p:
            p.send(payload(1, count))
    finally:
        os.kill(reader.pid, signal.SIGCONT)
    r = procs.result("reader")
    assert r["torn"] == 0 and r["backwards"] == 0
    assert r["delivered"] + r["lost"] == count + 1 and r["lost"] > 0
    assert r["lag"] == 0
    assert (part_stats(bus, "t")["dropped_oldest"] > 0) == drop_oldest


@pytest.mark.timeout(120)
@pytest.mark.parametrize("case", ["untethered", "drop_oldest"])
def test_slow_reader_is_lapped_but_never_reads_a_torn_message(bus, bus_name, procs, spawn, case):
    """A reader a producer laps, while it reads: an untethered one beside a
    tethered reader that keeps up, or a tethered one on a drop_oldest topic."""
    count = 60000
    drop_oldest = case == "drop_oldest"
    bus.create_topic("t", capacity=2**14, on_full="drop_oldest" if drop_oldest else "block")
    ready_r, ready_d, done, go = spawn.Event(), spawn.Event(), spawn.Event(), spawn.Event()
    procs.start("reader", "lossy_reader", bus_name=bus_name, topic="t", count=count + 1,
                ready=ready_r, pause=0.002, tethered=drop_oldest)
    if not drop_oldest:
        procs.start("drain", "drain_consumer", bus_name=bus_name, topic="t", ready=ready_d,
                    done=done)
        wait_ready(ready_d)
    wait_ready(ready_r)
    procs.start("producer", "producer", bus_name=bus_name, topic="t", pid=2, count=count, go=go,
                size=200)
    go.set()
    assert procs.result("producer")["accepted"] == count
    done.set()
    with bus.producer("t") as p:
        p.send(payload(2, count, 200))
    r = procs.result("reader")
    assert r["torn"] == 0 and r["backwards"] == 0
    assert r["delivered"] + r["lost"] == count + 1
    assert r["delivered"] > 0 and r["lost"] > 0


@pytest.mark.timeout(60)
def test_drop_oldest_recovers_a_dead_producers_claim_at_the_head(bus, bus_name, procs):
    """No reader at all: the producers themselves turn a dead claim into padding
    when it stands where the oldest must be dropped."""
    bus.create_topic("t", capacity=4096, max_messages=64, on_full="drop_oldest")
    with bus.producer("t", timeout=3.0) as p:
        for _ in range(5):
            p.send(b"x" * 40)
        procs.start("dies", "faulty_producer", bus_name=bus_name, topic="t",
                    fault="after_claim:kill", value=b"D" * 40)
        assert procs.join("dies", timeout=30) == -signal.SIGKILL
        for _ in range(1000):  # many laps past the dead claim; BusFull after 3 s if stuck
            p.send(b"y" * 40)
    s = part_stats(bus, "t")
    assert s["recovered_claims"] == 1 and s["dropped_oldest"] > 900


@pytest.mark.timeout(60)
def test_a_lapped_reader_never_takes_a_slot_being_rewritten(bus, bus_name, procs):
    """A producer stopped in the middle of rewriting a slot an untethered reader
    has not read yet: the reader skips it as lost, never returns it torn."""
    bus.create_topic("t", capacity=4096, max_messages=16)
    with bus.consumer("t") as keeper, bus.consumer("t", tethered=False, start="earliest") as u, \
            bus.producer("t") as p:
        for k in range(16):
            p.send(bytes([65 + k]) * (10 + k))
        assert len(keeper.poll_batch(100, timeout=1)) == 16
        keeper.poll(timeout=0)  # commits all 16: slot 0 may be reused
        stopped = procs.start("stops", "faulty_producer", bus_name=bus_name, topic="t",
                              fault="during_copy:stop", value=b"Z" * 200 + b"Y" * 200)
        wait_until(lambda: psutil.Process(stopped.pid).status() == psutil.STATUS_STOPPED, 20,
                   "the producer to stop mid-copy")
        m = u.poll(timeout=0.5)
        assert m is None or (m.offset != 0 and m.lost_before > 0)
        os.kill(stopped.pid, signal.SIGCONT)
        m = u.poll(timeout=5) if m is None else m
        assert m is not None and m.value == b"Z" * 200 + b"Y" * 200 and m.lost_before == 16
