"""The command line: stat, ls, rm and gc driven as a user would, with
subprocess, against buses that other processes use."""
import json
import os
import subprocess
import sys

import pytest

import shmbus
from _procs import Flag, wait_ready

pytestmark = pytest.mark.timeout(120)
SHM = "/dev/shm"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def shmbus_cmd(*args, timeout=60):
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, "-m", "shmbus", *args], capture_output=True,
                          text=True, timeout=timeout, env=env)


def one_line_failure(out, status=1):
    assert out.returncode == status, out
    assert "Traceback" not in out.stderr, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    return out.stderr


def segments_of(bus_name):
    return [n for n in os.listdir(SHM) if n == f"shmbus:{bus_name}" or
            n.startswith(f"shmbus:{bus_name}:")]


def stat_json(target):
    out = shmbus_cmd("stat", target, "--json", "--interval", "0")
    assert out.returncode == 0, out
    return json.loads(out.stdout)


def group_named(topic, name):
    return next(g for g in topic["groups"] if g["name"] == name)


# -- stat ------------------------------------------------------------------------------------

def test_stat_json_is_what_the_processes_did(bus, procs, spawn):
    bus.create_topic("t", partitions=2, capacity=2**18)
    ready = Flag(spawn)
    procs.start("member", "_cli_workers:hold", bus_name=bus.name, topic="t", group="g",
                take=600, ack=500, ready=ready)
    procs.start("producer", "_cli_workers:publish", bus_name=bus.name, topic="t", count=1000)
    assert procs.result("producer") == 1000
    wait_ready(ready)
    report = stat_json(f"{bus.name}/t")
    assert report["schema"] == 1
    t = report["buses"][bus.name]["topics"]["t"]
    assert t["config"]["partitions"] == 2 and t["config"]["on_full"] == "block"
    assert sum(p["published"] for p in t["partitions"]) == 1000
    g = group_named(t, "g")
    assert (g["delivered"], g["acked"], g["pending"], g["lag"]) == (600, 500, 100, 500)
    assert sum(p["committed"] for p in g["partitions"]) == 500
    [m] = g["members"]
    assert m["alive"] and m["pid"] == procs.procs["member"].pid and m["pending"] == 100
    assert t["health"]["status"] == "ok", t["health"]
    assert t["producers"] == []  # the producer has gone

    # the member dies holding 100: stat shows it (a monitor does not recover it)
    procs.procs["member"].kill()
    procs.join("member")
    t = stat_json(f"{bus.name}/t")["buses"][bus.name]["topics"]["t"]
    [m] = group_named(t, "g")["members"]
    assert not m["alive"] and m["pending"] == 100
    assert t["health"]["status"] == "warning"
    assert any(p["kind"] == "dead_member" and "died holding 100" in p["text"]
               for p in t["health"]["problems"]), t["health"]
    # a user of the topic recovers it; then stat says so
    assert bus.sweep("t")["deliveries"] == 100
    g = group_named(stat_json(bus.name)["buses"][bus.name]["topics"]["t"], "g")
    assert g["recovered_deliveries"] == 100 and g["pending"] == 100 and g["live_members"] == 0


def test_stat_rates_and_text(bus, procs):
    bus.create_topic("t", capacity=2**18)
    procs.start("producer", "_cli_workers:publish", bus_name=bus.name, topic="t", count=800)
    out = shmbus_cmd("stat", bus.name)
    assert out.returncode == 0, out
    assert "topic t" in out.stdout and "partition" in out.stdout
    procs.result("producer")
    with bus.consumer("t", group="g", start="earliest"):
        report = json.loads(shmbus_cmd("stat", bus.name, "--json", "--interval", "0.2").stdout)
    t = report["buses"][bus.name]["topics"]["t"]
    assert t["rates"] is not None and t["rates"]["seconds"] > 0
    assert group_named(t, "g")["rates"]["delivered"] == 0


def test_stat_of_every_bus_includes_this_one(bus):
    bus.create_topic("t", capacity=2**16)
    report = json.loads(shmbus_cmd("stat", "--json", "--interval", "0").stdout)
    assert "t" in report["buses"][bus.name]["topics"]


def test_stat_bad_input(bus_name, bus):
    bus.create_topic("t", capacity=2**16)
    missing = f"{bus_name}-missing"
    assert "does not exist" in one_line_failure(shmbus_cmd("stat", missing))
    assert not segments_of(missing), "stat created the bus"
    assert "does not exist" in one_line_failure(shmbus_cmd("stat", f"{bus.name}/nope"))
    one_line_failure(shmbus_cmd("stat", "bad name!"), status=2)
    one_line_failure(shmbus_cmd("stat", bus.name, "--interval", "-1"), status=2)
    out = shmbus_cmd()
    assert out.returncode == 2 and "usage" in out.stderr


def test_stat_shows_a_damaged_topic_as_damaged(bus):
    bus.create_topic("good", capacity=2**16)
    bus.create_topic("bad", capacity=2**16)
    with open(os.path.join(SHM, f"shmbus:{bus.name}:bad:meta"), "r+b") as f:
        f.write(b"\xff" * 64)  # its header: magic, version, kind, size
    out = shmbus_cmd("stat", bus.name, "--json", "--interval", "0")
    assert out.returncode == 1 and "Traceback" not in out.stderr, out
    topics = json.loads(out.stdout)["buses"][bus.name]["topics"]
    assert topics["bad"]["health"]["status"] == "damaged" and topics["bad"]["damaged"]
    assert topics["good"]["health"]["status"] == "ok"
    out = shmbus_cmd("stat", bus.name)
    assert out.returncode == 1 and "Traceback" not in out.stderr + out.stdout
    assert "damaged" in out.stdout


def test_stat_of_a_segment_it_may_not_trust(bus):
    bus.create_topic("t", capacity=2**16)
    meta = os.path.join(SHM, f"shmbus:{bus.name}:t:meta")
    os.chmod(meta, 0o606)  # writable by anyone
    try:
        out = shmbus_cmd("stat", f"{bus.name}/t", "--json", "--interval", "0")
        assert out.returncode == 1 and "Traceback" not in out.stderr
        t = json.loads(out.stdout)["buses"][bus.name]["topics"]["t"]
        assert "writable by every user" in t["damaged"]
        ls = [b for b in json.loads(shmbus_cmd("ls", "--json").stdout)["buses"]
              if b["name"] == bus.name]
        assert ls[0]["topics"][0]["in_use"] is None
        assert "writable by every user" in one_line_failure(shmbus_cmd("gc", bus.name))
    finally:
        os.chmod(meta, 0o600)


# -- ls, rm ----------------------------------------------------------------------------------

def test_ls_lists_buses_topics_sizes_and_use(bus):
    bus.create_topic("a", partitions=2, capacity=2**16)
    bus.create_topic("b", capacity=2**16)
    with bus.producer("a"):
        out = shmbus_cmd("ls", "--json")
    assert out.returncode == 0, out
    [b] = [x for x in json.loads(out.stdout)["buses"] if x["name"] == bus.name]
    assert b["in_use"] and b["created_ns"] > 0
    topics = {t["name"]: t for t in b["topics"]}
    assert topics["a"]["partitions"] == 2 and topics["a"]["in_use"]
    assert topics["b"]["partitions"] == 1 and not topics["b"]["in_use"]
    assert b["bytes"] == sum(os.stat(os.path.join(SHM, n)).st_size for n in segments_of(bus.name))
    text = shmbus_cmd("ls").stdout
    assert bus.name in text


def test_rm_topic_and_bus(bus_name):
    b = shmbus.Bus(bus_name)
    try:
        b.create_topic("a", capacity=2**16)
        b.create_topic("b", capacity=2**16)
        assert "in use" in one_line_failure(shmbus_cmd("rm", bus_name))
        assert shmbus_cmd("rm", f"{bus_name}/b").returncode == 0
        assert b.topics() == ["a"]
        assert "does not exist" in one_line_failure(shmbus_cmd("rm", f"{bus_name}/b"))
        assert shmbus_cmd("rm", bus_name, "--force").returncode == 0
        assert not segments_of(bus_name)
        assert "does not exist" in one_line_failure(shmbus_cmd("rm", bus_name))
    finally:
        b.unlink()
        b.close()


# -- gc --------------------------------------------------------------------------------------

def test_gc_removes_a_dead_bus_and_leaves_a_live_one(bus, procs, bus_name):
    dead = f"{bus_name}-dead"
    bus.create_topic("t", capacity=2**16)
    try:
        p = procs.start("dead", "_cli_workers:dead_bus", bus_name=dead, topic="t")
        p.join(30)
        assert p.exitcode == -9
        assert segments_of(dead)
        with bus.consumer("t", group="g"):
            out = shmbus_cmd("gc", dead, bus.name, "--dry-run", "--json")
            assert json.loads(out.stdout)["removed"][0]["bus"] == dead and segments_of(dead)
            out = shmbus_cmd("gc", dead, bus.name, "--json")
        assert out.returncode == 0, out
        got = json.loads(out.stdout)
        assert [r["bus"] for r in got["removed"]] == [dead]
        assert got["removed"][0]["topics"] == ["t"] and got["removed"][0]["bytes"] > 0
        assert list(got["in_use"]) == [bus.name]
        assert not segments_of(dead)
        assert bus.topics() == ["t"]
        with bus.producer("t") as p:  # the live bus works on
            p.send(b"still here")
        # closed but not removed: nobody uses it now, and gc takes it
        bus.close()
        assert shmbus_cmd("gc", bus.name).returncode == 0
        assert not segments_of(bus.name)
    finally:
        shmbus.Bus(dead).unlink()


def test_gc_bad_input(bus_name):
    assert "no memory bus" in one_line_failure(shmbus_cmd("gc", bus_name))
    one_line_failure(shmbus_cmd("gc", "a/b"), status=2)


def test_a_bus_opened_while_gc_removes_it_is_made_again(bus_name):
    """Bus() holds the marker's open lock shared; gc takes it exclusively to
    remove.  A Bus opened after gc finds the names gone and makes a new bus."""
    b = shmbus.Bus(bus_name)
    b.create_topic("t", capacity=2**16)
    b.close()
    assert shmbus_cmd("gc", bus_name).returncode == 0
    with shmbus.Bus(bus_name) as again:
        assert again.topics() == []
        assert segments_of(bus_name) == [f"shmbus:{bus_name}"]
        again.unlink()
