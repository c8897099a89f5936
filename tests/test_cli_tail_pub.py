"""``shmbus tail`` and ``shmbus pub``, driven as real commands (``python -m shmbus``)
against real shared memory, with producers and group members in spawned children."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

import shmbus
from _helpers import segments_of
from _procs import Flag, wait_ready, wait_until

pytestmark = pytest.mark.timeout(120)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, PYTHONPATH=REPO)
RUN_TIMEOUT = 30.0


def cli(*args, stdin=b"", timeout=RUN_TIMEOUT):
    """Run ``shmbus ARGS`` to its end; the CompletedProcess (bytes out and err)."""
    return subprocess.run([sys.executable, "-m", "shmbus", *args], input=stdin,
                          capture_output=True, env=ENV, timeout=timeout)


def _sigint_default():
    # A child of a non-interactive shell may inherit SIGINT ignored; Python then
    # never raises KeyboardInterrupt.  Ctrl-C must reach the tail under test.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Tail:
    """``shmbus tail`` running in the background, its output going to files."""

    def __init__(self, tmp_path, *args):
        self.out_path, self.err_path = tmp_path / "tail.out", tmp_path / "tail.err"
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.p = subprocess.Popen([sys.executable, "-m", "shmbus", "tail", *args],
                                      stdout=out, stderr=err, env=ENV,
                                      preexec_fn=_sigint_default)

    def out(self):
        return self.out_path.read_bytes()

    def err(self):
        return self.err_path.read_text()

    def alive(self):
        if self.p.poll() is not None:
            raise AssertionError(f"tail exited with {self.p.returncode}: {self.err()}")
        return True

    def wait(self, timeout=RUN_TIMEOUT):
        return self.p.wait(timeout=timeout)

    def kill(self):
        if self.p.poll() is None:
            os.kill(self.p.pid, signal.SIGCONT)
            self.p.kill()
            self.p.wait(timeout=10)


@pytest.fixture
def tails():
    started = []
    yield lambda *a: started.append(Tail(*a)) or started[-1]
    for t in started:
        t.kill()


def members(bus, topic, private=True):
    """Live members of the topic's private groups (or of its named groups)."""
    return sum(g["live_members"] for g in bus.stats(topic)["groups"] if g["private"] == private)


def attached(tail, bus, topic, n=1):
    """Wait until ``n`` private-group members are attached (the tail among them)."""
    wait_until(lambda: tail.alive() and members(bus, topic) >= n, 20, "tail to attach")


# -- children ------------------------------------------------------------------------


def send_values(bus_name, topic, values, pause=0.01):
    """Send each value, a little apart."""
    with shmbus.Bus(bus_name) as bus, bus.producer(topic, timeout=10.0) as p:
        for v in values:
            p.send(v)
            time.sleep(pause)
    return len(values)


def send_count(bus_name, topic, count, size, timeout):
    """Send ``count`` values of ``size`` bytes under the topic's policy, each send
    waiting at most ``timeout`` s; stops at the first BusFull.  Reports how many
    went and how long it took."""
    with shmbus.Bus(bus_name) as bus, bus.producer(topic, timeout=timeout) as p:
        t0 = time.monotonic()
        for i in range(count):
            try:
                p.send(b"%08d" % i + b"x" * (size - 8))
            except shmbus.BusFull:
                return dict(sent=i, full=True, seconds=time.monotonic() - t0)
        return dict(sent=count, full=False, seconds=time.monotonic() - t0)


def group_member(bus_name, topic, group, ready, ordering="partition", pause=0.0,
                 idle=2.0, deadline=40.0):
    """Join ``group`` (creating it), read until ``idle`` s pass without a message
    after the first one; the values received."""
    with shmbus.Bus(bus_name) as bus, bus.consumer(topic, group=group, ordering=ordering,
                                                   start="earliest") as c:
        ready.set()
        got, last = [], None
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            m = c.poll(timeout=0.1)
            if m is None:
                if last is not None and time.monotonic() - last > idle:
                    break
                continue
            got.append(m.value)
            last = time.monotonic()
            if pause:
                time.sleep(pause)
        return got


def idle_reader(bus_name, topic, ready, stop, deadline=30.0):
    """A tethered private group that never reads (what tail must not be)."""
    with shmbus.Bus(bus_name) as bus, bus.consumer(topic, start="latest"):
        ready.set()
        stop.wait(deadline)


# -- pub, then tail ------------------------------------------------------------------


def test_pub_then_tail_json_gives_values_key_headers_in_order(bus):
    bus.create_topic("t")
    r = cli("pub", f"{bus.name}/t", "--key", "user-42", "--header", "type=created",
            stdin=b"one\ntwo\nthree\n")
    assert (r.returncode, r.stdout, r.stderr) == (0, b"", b"")
    r = cli("tail", f"{bus.name}/t", "--from", "earliest", "-n", "3", "--format", "json")
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.decode().splitlines()]
    assert [x["value"] for x in rows] == ["one", "two", "three"]
    assert [x["offset"] for x in rows] == [0, 1, 2]
    for x in rows:
        assert (x["topic"], x["partition"], x["key"]) == ("t", 0, "user-42")
        assert x["headers"] == {"type": "created"}
        assert isinstance(x["timestamp_ns"], int) and x["timestamp_ns"] > 0


def test_tail_raw_hex_and_json_of_binary_values(bus):
    bus.create_topic("t")
    with bus.producer("t") as p:
        p.send(b"plain")
        p.send(b"\xff\x00\x01", key=b"\x80k")
        p.send(b"")
    r = cli("tail", f"{bus.name}/t", "--from", "earliest", "-n", "3")
    assert (r.returncode, r.stdout) == (0, b"plain\n\xff\x00\x01\n\n")
    r = cli("tail", f"{bus.name}/t", "--from", "earliest", "-n", "3", "--format", "hex")
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().splitlines() == [
        "0 0 key=null 70 6c 61 69 6e", "0 1 key=0x806b ff 00 01", "0 2 key=null"]
    r = cli("tail", f"{bus.name}/t", "--from", "earliest", "-n", "3", "--format", "json")
    rows = [json.loads(line) for line in r.stdout.decode().splitlines()]
    assert rows[1]["value"] == {"base64": "/wAB"} and rows[1]["key"] == {"base64": "gGs="}
    assert rows[2]["value"] == ""


def test_tail_from_latest_skips_what_was_there_and_timeout_ends_it(bus):
    bus.create_topic("t")
    with bus.producer("t") as p:
        p.send(b"old")
    r = cli("tail", f"{bus.name}/t", "--timeout", "0.5")
    assert (r.returncode, r.stdout, r.stderr) == (0, b"", b"")


def test_pub_verbose_prints_offsets_and_stops_at_a_message_too_large(bus):
    bus.create_topic("t", max_message_size=8)
    r = cli("pub", "-v", f"{bus.name}/t", stdin=b"a\nb\n")
    assert (r.returncode, r.stdout.split(b"\n")) == (0, [b"0 0", b"0 1", b""])
    r = cli("pub", f"{bus.name}/t", stdin=b"c\nd\nmuch too large\ne\n")
    assert r.returncode == 1
    err = r.stderr.decode()
    assert err.count("\n") == 1 and "line 3" in err and "2 lines were published before" in err
    assert bus.stats("t")["partitions"][0]["published"] == 4  # a, b, c, d


def test_pub_on_a_full_topic_under_error_says_how_far_it_got(bus):
    bus.create_topic("t", capacity=4096, on_full="error")
    with bus.consumer("t"):  # a tethered group that does not read: the ring fills
        r = cli("pub", f"{bus.name}/t", stdin=b"0123456789abcdef\n" * 1000)
    assert r.returncode == 1
    err = r.stderr.decode()
    assert err.count("\n") == 1 and "full" in err and "published before" in err
    published = bus.stats("t")["partitions"][0]["published"]
    assert f"{published} lines were published before" in err and 0 < published < 1000


# -- following -----------------------------------------------------------------------


def test_tail_follows_a_live_producer_and_exits_after_n(bus, procs, tails, tmp_path):
    bus.create_topic("t")
    tail = tails(tmp_path, f"{bus.name}/t", "--from", "latest", "-n", "5")
    attached(tail, bus, "t")
    procs.start("producer", "test_cli_tail_pub:send_values", bus_name=bus.name, topic="t",
                values=[b"live-%d" % i for i in range(8)])
    assert procs.result("producer") == 8
    assert tail.wait() == 0, tail.err()
    assert tail.out() == b"".join(b"live-%d\n" % i for i in range(5))
    assert tail.err() == ""


def test_ctrl_c_ends_a_following_tail_with_status_0_and_no_traceback(bus, tails, tmp_path):
    """Ctrl-C is the normal way to stop tail, so it exits 0, printing nothing."""
    bus.create_topic("t")
    tail = tails(tmp_path, f"{bus.name}/t")
    attached(tail, bus, "t")
    tail.p.send_signal(signal.SIGINT)
    assert tail.wait() == 0
    assert tail.err() == "" and tail.out() == b""


def test_tail_exits_quietly_when_its_reader_goes_away(bus, tmp_path):
    """``shmbus tail ... | head -1``: once head has exited, tail notices within
    about a second (even with no further message) and exits 0 without a word."""
    bus.create_topic("t")
    err_path = tmp_path / "err"
    with open(err_path, "wb") as err:
        p = subprocess.Popen([sys.executable, "-m", "shmbus", "tail", f"{bus.name}/t"],
                             stdout=subprocess.PIPE, stderr=err, env=ENV)
    try:
        wait_until(lambda: p.poll() is None and members(bus, "t") >= 1, 20, "tail to attach")
        with bus.producer("t") as prod:
            prod.send(b"first")
        assert p.stdout.readline() == b"first\n"
        p.stdout.close()  # what head does when it has its line
        assert p.wait(timeout=10) == 0
        assert err_path.read_text() == ""
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(timeout=10)


def test_tail_in_a_group_shares_the_messages_with_the_other_member(bus, procs, spawn, tmp_path):
    """tail --group G is a member like any other: with the other member of G it
    receives each message exactly once.  (G is made by the other member with
    ordering="none", so both take messages from the one partition; tail joins G
    as it was made.  The other member is slowed so that tail gets some.)"""
    bus.create_topic("t")
    ready = Flag(spawn)
    procs.start("member", "test_cli_tail_pub:group_member", bus_name=bus.name, topic="t",
                group="G", ready=ready, ordering="none", pause=0.005, idle=3.0)
    wait_ready(ready)
    tail = Tail(tmp_path, f"{bus.name}/t", "--group", "G", "--timeout", "3", "--format", "json")
    try:
        wait_until(lambda: tail.alive() and members(bus, "t", private=False) >= 2, 20,
                   "tail to join G")
        sent = [b"m-%d" % i for i in range(300)]
        with bus.producer("t") as p:
            for v in sent:
                p.send(v)
        assert tail.wait() == 0, tail.err()
    finally:
        tail.kill()
    by_tail = [json.loads(line)["value"].encode() for line in tail.out().splitlines()]
    by_member = procs.result("member")
    assert by_tail and by_member, (len(by_tail), len(by_member))
    assert sorted(by_tail + by_member) == sorted(sent)  # each exactly once


# -- tail never slows a producer -----------------------------------------------------

CAPACITY = 4096
COUNT = 3000  # about 70 times what the ring holds
SIZE = 64


def _block_topic_with_a_group(bus, procs, spawn):
    bus.create_topic("t", capacity=CAPACITY, on_full="block")
    ready = Flag(spawn)
    procs.start("group", "test_cli_tail_pub:group_member", bus_name=bus.name, topic="t",
                group="work", ready=ready)
    wait_ready(ready)


def test_tail_on_a_full_topic_under_block_does_not_slow_the_producer(bus, procs, spawn,
                                                                   tails, tmp_path):
    """A block topic of 4 KiB, a tethered group "work" reading in a child, and a
    tail attached then stopped with SIGSTOP.  The producer sends about 70 times
    the ring's capacity, each send allowed 10 s: if the stopped tail held space,
    the ring would fill within the first ~1/70 of the run and a send would time
    out (the control test below shows exactly that with a tethered reader).  So
    the formulation is "every send succeeds and the group gets every message",
    which is not sensitive to machine speed.  Afterwards tail is continued: it
    reports on stderr what was overwritten while it slept, and Ctrl-C ends it."""
    _block_topic_with_a_group(bus, procs, spawn)
    tail = tails(tmp_path, f"{bus.name}/t")
    attached(tail, bus, "t")
    os.kill(tail.p.pid, signal.SIGSTOP)
    try:
        procs.start("producer", "test_cli_tail_pub:send_count", bus_name=bus.name, topic="t",
                    count=COUNT, size=SIZE, timeout=10.0)
        got = procs.result("producer", timeout=90)
        assert (got["sent"], got["full"]) == (COUNT, False), got
        assert len(procs.result("group", timeout=60)) == COUNT
        bus.delete_group("t", "work")  # its member is gone: it would hold the markers
    finally:
        os.kill(tail.p.pid, signal.SIGCONT)
    with bus.producer("t", timeout=10.0) as p:  # one more, so tail sees where the end is
        wait_until(lambda: p.send(b"marker") and b"marker\n" in tail.out(), 20,
                   "tail to print the marker", step=0.2)
    tail.p.send_signal(signal.SIGINT)
    assert tail.wait() == 0
    assert "overwritten before they could be read" in tail.err(), tail.err()
    assert "Traceback" not in tail.err()


def test_control_a_tethered_reader_that_stops_does_block_the_producer(bus, procs, spawn):
    """The control of the test above: the same topic and group, with a tethered
    reader that never reads in place of tail.  The producer cannot get far past
    the ring's capacity; its send times out (1 s) with BusFull."""
    _block_topic_with_a_group(bus, procs, spawn)
    ready, stop = Flag(spawn), Flag(spawn)
    procs.start("idle", "test_cli_tail_pub:idle_reader", bus_name=bus.name, topic="t",
                ready=ready, stop=stop)
    wait_ready(ready)
    procs.start("producer", "test_cli_tail_pub:send_count", bus_name=bus.name, topic="t",
                count=COUNT, size=SIZE, timeout=1.0)
    got = procs.result("producer", timeout=60)
    stop.set()
    assert got["full"] and got["sent"] * SIZE <= 2 * CAPACITY, got


# -- errors --------------------------------------------------------------------------


def _one_line(r, status):
    err = r.stderr.decode()
    assert r.returncode == status, (r.returncode, err)
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("command", ["tail", "pub"])
def test_an_unknown_bus_is_an_error_and_is_not_created(bus_name, command):
    err = _one_line(cli(command, f"{bus_name}/t", "--timeout", "1")
                    if command == "tail" else cli(command, f"{bus_name}/t"), 1)
    assert "does not exist" in err
    assert segments_of(bus_name) == []


@pytest.mark.parametrize("command", ["tail", "pub"])
def test_an_unknown_topic_is_an_error(bus, command):
    err = _one_line(cli(command, f"{bus.name}/nope"), 1)
    assert "'nope' does not exist" in err
    assert bus.topics() == []


@pytest.mark.parametrize("command", ["tail", "pub"])
@pytest.mark.parametrize("name", ["bad name/t", "ok/.bad", "only-a-bus"])
def test_bad_names_are_usage_errors(command, name):
    err = _one_line(cli(command, name), 2)
    assert err.startswith(f"shmbus {command}: ")


def test_bad_options_are_usage_errors(bus):
    bus.create_topic("t")
    _one_line(cli("tail", f"{bus.name}/t", "-n", "0"), 2)
    _one_line(cli("tail", f"{bus.name}/t", "--timeout", "-1"), 2)
    _one_line(cli("pub", f"{bus.name}/t", "--header", "novalue"), 2)
