"""``shmbus export``: the Prometheus exporter, run as its own process
(``python -m shmbus export``) beside a producer process and a group member
process, scraped over HTTP and parsed with prometheus_client's parser."""
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

import shmbus
from _procs import Flag, wait_until

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOPIC = "t"
PUBLISHED = 5000
TAKEN = 1234


# -- children (spawned; run through _workers.run as "test_cli_export:function") ------

def producer_worker(bus_name, topic, count, sent, stop, deadline=30.0):
    """Publishes ``count`` messages over the partitions in turn, sets ``sent``, and
    stays attached (a live producer) until ``stop``."""
    with shmbus.Bus(bus_name) as bus, bus.producer(topic, timeout=deadline) as p:
        n = len(bus.stats(topic)["partitions"])
        for i in range(count):
            p.send(i.to_bytes(8, "little"), partition=i % n)
        sent.set()
        stop.wait(deadline)
    return os.getpid()


def member_worker(bus_name, topic, group, take, ready, stop, deadline=30.0):
    """Takes ``take`` messages with manual acknowledgement, acks them all, sets
    ``ready``, and stays a live member of the group until ``stop``."""
    with shmbus.Bus(bus_name) as bus, bus.consumer(topic, group=group, ack="manual",
                                                   start="earliest") as c:
        got = []
        end = time.monotonic() + deadline
        while len(got) < take and time.monotonic() < end:
            got += c.poll_batch(take - len(got), timeout=0.1)
        if len(got) != take:
            raise RuntimeError(f"took {len(got)} of {take}")
        c.ack(got)
        ready.set()
        stop.wait(deadline)
    return os.getpid()


# -- the exporter ----------------------------------------------------------------

def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env():
    e = dict(os.environ)
    e["PYTHONPATH"] = ROOT + (os.pathsep + e["PYTHONPATH"] if e.get("PYTHONPATH") else "")
    return e


def start_export(*args):
    return subprocess.Popen([sys.executable, "-m", "shmbus", "export", *args], env=env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def stop(proc):
    """Kill it if it still runs; its output (empty if already read)."""
    if proc.poll() is not None and proc.stdout.closed:
        return "", ""
    if proc.poll() is None:
        proc.kill()
    try:
        return proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        return "", ""


def get(port, path="/metrics", timeout=20.0):
    """(status, body) of the first answer; fails if none comes within ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()
        except OSError:
            if time.monotonic() >= deadline:
                raise AssertionError(f"the exporter did not answer on port {port} in {timeout}s")
            time.sleep(0.1)


def scrape(port, exporter):
    status, body = get(port)
    assert status == 200, body
    assert exporter.poll() is None, "the exporter exited"
    samples = {}
    for fam in text_string_to_metric_families(body):
        assert fam.name.startswith("shmbus_"), fam.name
        assert fam.documentation, f"{fam.name} has no HELP"
        for s in fam.samples:
            samples.setdefault(s.name, []).append((s.labels, s.value))
    return samples


def pick(samples, name, **labels):
    """Values of ``name`` whose labels include ``labels``, keyed by the rest."""
    out = {}
    for lab, v in samples.get(name, []):
        if all(lab.get(k) == val for k, val in labels.items()):
            rest = tuple(sorted((k, x) for k, x in lab.items() if k not in labels))
            assert rest not in out, f"duplicate series {name} {lab}"
            out[rest] = v
    return out


def by_partition(values):
    return {dict(k)["partition"]: v for k, v in values.items()}


# -- tests -----------------------------------------------------------------------

@pytest.mark.timeout(90)
def test_metrics_of_a_live_bus(bus, bus_name, procs, spawn):
    bus.create_topic(TOPIC, partitions=2, capacity=2**20)
    sent, ready, done = Flag(spawn), Flag(spawn), Flag(spawn)
    procs.start("producer", "test_cli_export:producer_worker", bus_name=bus_name, topic=TOPIC,
                count=PUBLISHED, sent=sent, stop=done)
    assert sent.wait(30), "the producer did not publish in time"
    procs.start("member", "test_cli_export:member_worker", bus_name=bus_name, topic=TOPIC,
                group="workers", take=TAKEN, ready=ready, stop=done)
    assert ready.wait(30), "the member did not take its messages in time"
    port = free_port()
    exporter = start_export(bus_name, "--port", str(port))
    try:
        m = scrape(port, exporter)
        bt = dict(bus=bus_name, topic=TOPIC)

        published = by_partition(pick(m, "shmbus_messages_published_total", **bt))
        assert set(published) == {"0", "1"}
        assert sum(published.values()) == PUBLISHED
        assert set(pick(m, "shmbus_messages_published_total")) == {
            (("bus", bus_name), ("partition", p), ("topic", TOPIC)) for p in "01"}
        bytes_ = by_partition(pick(m, "shmbus_bytes_published_total", **bt))
        assert sum(bytes_.values()) >= PUBLISHED * 8
        drops = pick(m, "shmbus_messages_dropped_total", **bt)
        assert {dict(k)["reason"] for k in drops} == {"full", "oldest", "spill_lost"}
        assert len(drops) == 6 and not any(drops.values())

        g = dict(bt, group="workers")
        lag = by_partition(pick(m, "shmbus_group_lag", **g))
        committed = by_partition(pick(m, "shmbus_group_committed_offset", **g))
        assert set(lag) == set(committed) == {"0", "1"}
        assert sum(committed.values()) == TAKEN
        assert sum(lag.values()) == PUBLISHED - TAKEN
        for p in lag:
            assert lag[p] == published[p] - committed[p]
        assert sum(by_partition(pick(m, "shmbus_group_pending", **g)).values()) == 0
        assert pick(m, "shmbus_group_messages_delivered_total", **g) == {(): TAKEN}
        assert pick(m, "shmbus_group_messages_acked_total", **g) == {(): TAKEN}
        assert pick(m, "shmbus_group_messages_redelivered_total", **g) == {(): 0}
        assert pick(m, "shmbus_group_messages_dead_lettered_total", **g) == {(): 0}
        assert pick(m, "shmbus_group_members", **g) == {(("state", "alive"),): 1,
                                                        (("state", "dead"),): 0}
        idle = pick(m, "shmbus_member_idle_seconds", **g)
        member_pid = procs.procs["member"].pid
        assert list(idle) == [(("pid", str(member_pid)),)]
        assert 0 <= idle[(("pid", str(member_pid)),)] < 60

        assert pick(m, "shmbus_topic_producers", **bt) == {(): 1}
        assert pick(m, "shmbus_topic_healthy", **bt) == {(): 1}
        assert pick(m, "shmbus_topic_damaged", **bt) == {(): 0}
        assert pick(m, "shmbus_topic_partitions", **bt) == {(): 2}
        assert pick(m, "shmbus_bus_up", bus=bus_name) == {(): 1}
        fill = by_partition(pick(m, "shmbus_partition_fill_ratio", **bt))
        assert all(0 < f <= 1 for f in fill.values())
        assert set(by_partition(pick(m, "shmbus_partition_spill_waiting", **bt)).values()) == {0}
        assert set(by_partition(pick(m, "shmbus_recovered_claims_total", **bt)).values()) == {0}
        assert len(pick(m, "shmbus_topic_wakeups_total", **bt)) == 1
        assert len(pick(m, "shmbus_export_look_seconds")) == 1

        # each scrape reads the bus afresh
        with bus.producer(TOPIC) as p:
            p.send_many([b"more"] * 100)
        m = scrape(port, exporter)
        assert sum(pick(m, "shmbus_messages_published_total", **bt).values()) == PUBLISHED + 100
        assert sum(pick(m, "shmbus_group_lag", **g).values()) == PUBLISHED + 100 - TAKEN
        with bus.producer(TOPIC) as p:
            assert p.send(b"once", msg_id="x") == p.send(b"twice", msg_id="x")
        m = scrape(port, exporter)
        assert sum(pick(m, "shmbus_duplicates_total", **bt).values()) == 1
        assert sum(pick(m, "shmbus_dedup_evicted_total", **bt).values()) == 0
    finally:
        done.set()
        out, err = stop(exporter)
    assert procs.result("member") == member_pid
    procs.result("producer")


@pytest.mark.timeout(60)
def test_private_groups_are_labelled_by_entry(bus, bus_name):
    bus.create_topic(TOPIC)
    port = free_port()
    with bus.consumer(TOPIC) as c, bus.producer(TOPIC) as p:
        p.send_many([b"x"] * 10)
        c.poll_batch(10, timeout=1.0)
        exporter = start_export(bus_name, "--port", str(port))
        try:
            m = scrape(port, exporter)
        finally:
            stop(exporter)
    groups = {lab["group"] for lab, _ in m["shmbus_group_lag"]}
    assert len(groups) == 1
    (label,) = groups
    assert label.startswith("(private:") and label.endswith(")")
    assert int(label[len("(private:"):-1]) >= 0


@pytest.mark.timeout(60)
def test_paths_other_than_metrics(bus, bus_name):
    port = free_port()
    exporter = start_export(bus_name, "--port", str(port))
    try:
        assert get(port, "/")[0] == 200
        assert get(port, "/nothing")[0] == 404
    finally:
        stop(exporter)


@pytest.mark.timeout(60)
def test_a_missing_bus_is_down_and_not_created(bus_name):
    port = free_port()
    exporter = start_export(bus_name, "--port", str(port))
    try:
        m = scrape(port, exporter)
    finally:
        stop(exporter)
    assert pick(m, "shmbus_bus_up", bus=bus_name) == {(): 0}
    assert not [n for n in os.listdir("/dev/shm") if bus_name in n]


@pytest.mark.timeout(60)
def test_port_in_use_exits_1_with_one_line(bus, bus_name):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
        held.bind(("127.0.0.1", 0))
        held.listen(1)
        port = held.getsockname()[1]
        exporter = start_export(bus_name, "--port", str(port))
        try:
            out, err = exporter.communicate(timeout=30)
        finally:
            stop(exporter)
    assert exporter.returncode == 1
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("shmbus export: ") and "in use" in lines[0] and str(port) in lines[0]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_ends_it_quietly(bus, bus_name, sig):
    port = free_port()
    exporter = start_export(bus_name, "--port", str(port))
    try:
        assert get(port)[0] == 200
        exporter.send_signal(sig)
        out, err = exporter.communicate(timeout=15)
    finally:
        stop(exporter)
    assert exporter.returncode == 0, err
    assert "Traceback" not in err
    assert all(line.startswith("shmbus export: serving ") for line in err.splitlines()), err


@pytest.mark.timeout(60)
@pytest.mark.parametrize("args", [["x/y"], ["--port", "70000"], ["--path", "/tmp"], ["bad name"]])
def test_bad_usage_exits_2(args):
    exporter = start_export(*args)
    try:
        out, err = exporter.communicate(timeout=30)
    finally:
        stop(exporter)
    assert exporter.returncode == 2, err
    assert len(err.splitlines()) == 1 or "usage:" in err
