"""``shmbus top``: run in a pseudo-terminal (80x24) against producers and
group members in other processes, its screen read back with pyte; and the
pure rendering function on real and hand-made reports."""
import copy
import fcntl
import io
import os
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time

import pyte
import pytest
from rich.console import Console

import shmbus
from _procs import Flag, wait_ready
from shmbus._cli.report import Watcher
from shmbus._cli.top import render

pytestmark = pytest.mark.timeout(90)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOPIC = "orders"


def paced_producer(bus_name, topic, stop, ready, rate=200, deadline=40.0):
    """Send small numbered messages at about ``rate`` a second until ``stop``."""
    with shmbus.Bus(bus_name) as bus, bus.producer(topic, timeout=1.0) as p:
        ready.set()
        n = 0
        end = time.monotonic() + deadline
        while not stop.is_set() and time.monotonic() < end:
            try:
                p.send(str(n).encode())
            except shmbus.BusFull:
                continue
            n += 1
            time.sleep(1.0 / rate)
        return n


class Top:
    """``shmbus top ARGS`` on a pseudo-terminal of ``cols`` x ``rows``; what it
    draws is fed to a pyte screen.  ``stderr_pipe``: stderr apart, on a pipe."""

    def __init__(self, args, cols=80, rows=24, stderr_pipe=False):
        self.master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        env = dict(os.environ, PYTHONPATH=ROOT, TERM="xterm-256color")
        for k in ("COLUMNS", "LINES", "NO_COLOR"):  # rich would believe them over the pty
            env.pop(k, None)
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "shmbus", "top", *args], stdin=slave, stdout=slave,
                stderr=subprocess.PIPE if stderr_pipe else slave, env=env, start_new_session=True)
        finally:
            os.close(slave)
        os.set_blocking(self.master, False)
        self.screen = pyte.Screen(cols, rows)
        self.stream = pyte.ByteStream(self.screen)
        self.raw = bytearray()

    def pump(self, wait):
        """Read what top wrote within ``wait`` seconds."""
        r, _, _ = select.select([self.master], [], [], wait)
        if r:
            try:
                data = os.read(self.master, 1 << 16)
            except OSError:  # EIO: top has exited and closed the terminal
                data = b""
            self.raw += data
            self.stream.feed(data)

    def text(self):
        return "\n".join(line.rstrip() for line in self.screen.display)

    def wait_for(self, pred, timeout, what):
        deadline = time.monotonic() + timeout
        while True:
            self.pump(0.1)
            if pred(self.text()):
                return self.text()
            if self.proc.poll() is not None:
                self.pump(0.2)
                raise AssertionError(f"top exited ({self.proc.returncode}) before {what}:\n"
                                     f"{self.raw.decode(errors='replace')[-2000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {what} within {timeout}s; screen:\n{self.text()}")

    def wait_exit(self, timeout=15.0):
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            self.pump(0.1)  # keep reading: a full pty would block its last frame
        assert self.proc.poll() is not None, f"top did not exit within {timeout}s"
        self.pump(0.1)
        return self.proc.returncode

    def quit(self, timeout=15.0):
        os.write(self.master, b"q")
        return self.wait_exit(timeout)

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        if self.proc.stderr is not None:
            self.proc.stderr.close()
        os.close(self.master)


def row(text, name):
    """The cells after ``name`` on the screen's line that starts with it (indented)."""
    m = re.search(rf"^\s+{re.escape(name)}\s+(.*)$", text, re.M)
    return m.group(1).split() if m else None


def rate_shown(cells):
    return cells is not None and cells[0] not in ("-", "0")


def test_live_view_of_a_producer_and_a_group(bus, procs):
    bus.create_topic(TOPIC, partitions=2, capacity=1 << 20)
    stop, pready, mready = Flag(procs.ctx), Flag(procs.ctx), Flag(procs.ctx)
    procs.start("member", "_group_workers:member", bus_name=bus.name, topic=TOPIC,
                group="workers", ready=mready, stop=stop, start="earliest", deadline=60.0)
    procs.start("producer", "test_cli_top:paced_producer", bus_name=bus.name, topic=TOPIC,
                stop=stop, ready=pready)
    wait_ready(pready, mready)
    top = Top([bus.name, "--interval", "0.5"])
    try:
        text = top.wait_for(lambda t: rate_shown(row(t, TOPIC)) and rate_shown(row(t, "workers")),
                            30, "non-zero rates for the topic and the group")
        topic_cells, group_cells = row(text, TOPIC), row(text, "workers")
        assert re.fullmatch(r"[\d.]+[kM]?", topic_cells[0]), topic_cells  # msgs/s
        assert re.fullmatch(r"\d+(\.\d)?[kM]?", group_cells[1]), group_cells  # lag
        assert "topic/group" in text and "lag" in text and "q quits" in text
        assert bus.name in text
        assert all(len(line) <= 80 for line in top.screen.display)
        assert top.quit() == 0
    finally:
        stop.set()
        top.close()
    assert procs.result("producer") > 0
    procs.result("member")


def test_dead_member_is_shown_in_red(bus, procs):
    bus.create_topic(TOPIC, partitions=1, capacity=1 << 20)
    with bus.producer(TOPIC) as p:
        for i in range(20):
            p.send(str(i).encode())
    ready = Flag(procs.ctx)
    holder = procs.start("holder", "_recovery_workers:holder", bus_name=bus.name, topic=TOPIC,
                         group="workers", take=5, ready=ready)
    wait_ready(ready)
    top = Top([bus.name, "--interval", "0.3"])
    try:
        # top has mapped the topic (its one sweep) while the holder lives
        top.wait_for(lambda t: (row(t, "workers") or ["", "", "0"])[2] == "5", 30,
                     "the group holding 5 deliveries")
        os.kill(holder.pid, signal.SIGKILL)
        holder.join(10)
        line = f"pid {holder.pid}"
        text = top.wait_for(lambda t: line in t and "DEAD" in t, 20, "the dead member")
        y = next(i for i, l in enumerate(top.screen.display) if line in l)
        x = top.screen.display[y].index(line)
        assert top.screen.buffer[y][x].fg == "red"
        assert f"member pid {holder.pid} died holding 5 deliveries" in text  # the footer
        top.proc.send_signal(signal.SIGINT)  # Ctrl-C quits cleanly too
        assert top.wait_exit() == 0
        assert b"Traceback" not in top.raw
    finally:
        top.close()


def test_stopped_member_is_stalled(bus, procs):
    """A member SIGSTOPped while its group lags shows as stalled (``--stall 1``)."""
    bus.create_topic(TOPIC, partitions=1, capacity=1 << 20)
    stop, pready, mready = Flag(procs.ctx), Flag(procs.ctx), Flag(procs.ctx)
    member = procs.start("member", "_group_workers:member", bus_name=bus.name, topic=TOPIC,
                         group="workers", ready=mready, stop=stop, deadline=60.0)
    procs.start("producer", "test_cli_top:paced_producer", bus_name=bus.name, topic=TOPIC,
                stop=stop, ready=pready, rate=50)
    wait_ready(pready, mready)
    top = Top([bus.name, "--interval", "0.3", "--stall", "1"])
    try:
        top.wait_for(lambda t: row(t, "workers") is not None, 30, "the group")
        os.kill(member.pid, signal.SIGSTOP)
        line = f"pid {member.pid}"
        text = top.wait_for(lambda t: re.search(rf"{line} .*stalled \d+s", t), 20,
                            "the stalled member")
        y = next(i for i, l in enumerate(top.screen.display) if line in l)
        assert top.screen.buffer[y][top.screen.display[y].index(line)].fg == "brown"  # yellow
        assert f"member pid {member.pid} has not polled for" in text  # the footer
        assert top.quit() == 0
    finally:
        stop.set()
        os.kill(member.pid, signal.SIGCONT)
        top.close()
    procs.result("member")


def test_too_small_terminal(bus):
    top = Top([bus.name], cols=30, rows=8)
    try:
        top.wait_for(lambda t: "terminal too small (30x8); need 40x10" in t.replace("\n", " "),
                     20, "the too-small message")
        time.sleep(0.5)
        top.pump(0.2)
        assert top.proc.poll() is None
        assert not termios.tcgetattr(top.master)[3] & termios.ICANON  # keys without Enter
        assert top.quit() == 0
        assert b"Traceback" not in top.raw
        assert termios.tcgetattr(top.master)[3] & termios.ICANON  # the terminal restored
    finally:
        top.close()


def test_bus_removed_while_watched(bus):
    bus.create_topic(TOPIC, partitions=1, capacity=1 << 16)
    top = Top([bus.name, "--interval", "0.3"])
    try:
        top.wait_for(lambda t: row(t, TOPIC) is not None, 20, "the topic")
        bus.unlink()
        top.wait_for(lambda t: f"bus {bus.name} was removed" in t, 20, "the removal note")
        time.sleep(1.0)  # a few more looks at a bus that is not there
        top.pump(0.2)
        assert top.proc.poll() is None, top.raw.decode(errors="replace")[-2000:]
        assert top.quit() == 0
        assert b"Traceback" not in top.raw
    finally:
        top.close()


def test_unknown_bus_fails_before_the_screen(bus_name):
    top = Top([bus_name], stderr_pipe=True)
    try:
        assert top.wait_exit() == 1
        err = top.proc.stderr.read().decode()
        assert err == f"shmbus top: bus {bus_name!r} does not exist\n"
        assert b"\x1b[?1049h" not in top.raw  # never took the screen
    finally:
        top.close()


def test_not_a_terminal_refused(bus):
    r = subprocess.run([sys.executable, "-m", "shmbus", "top", bus.name], capture_output=True,
                       text=True, timeout=60, env=dict(os.environ, PYTHONPATH=ROOT),
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 2
    assert r.stdout == ""
    assert len(r.stderr.splitlines()) == 1 and "shmbus stat" in r.stderr


# -- the pure rendering function --------------------------------------------------------


def _lines(renderable, width=80):
    con = Console(width=width, file=io.StringIO(), color_system=None)
    con.print(renderable)
    return con.file.getvalue().splitlines()


@pytest.fixture
def report(bus):
    """Two looks at a bus with a topic, a group holding deliveries and a long name."""
    bus.create_topic(TOPIC, partitions=2, capacity=1 << 20)
    bus.create_topic("a-topic-with-a-name-far-too-long-for-its-column", capacity=1 << 16)
    w = Watcher([bus.name])
    with bus.producer(TOPIC) as p, bus.consumer(TOPIC, group="workers", ack="manual",
                                                start="earliest") as c:
        for i in range(100):
            p.send(b"x" * 50)
        w.look()
        for i in range(500):
            p.send(b"x" * 50)
        c.poll_batch(30, timeout=1.0)
        time.sleep(0.05)
        out = w.look()
    w.close()
    return out


def test_render_fits_80_columns(bus, report):
    lines = _lines(render(report, 80, 24, ["bus gone-one was removed"]))
    assert len(lines) <= 24
    assert all(len(line) <= 80 for line in lines), [len(line) for line in lines]
    text = "\n".join(lines)
    assert "bus gone-one was removed" in text and "q quits" in text
    topic = row(text, TOPIC)
    assert topic is not None and topic[0] != "-" and topic[4] == "1p", topic  # msgs/s, producers
    group = row(text, "workers")
    assert group[1] == "600" and group[2] == "30", group  # lag, pending (members shows live ones)
    assert re.search(r"^ a-topic-with-a\S*…", text, re.M)  # cut to its column


def test_render_problems_dead_stalled_damaged(bus, report):
    r = copy.deepcopy(report)
    b = r["buses"][bus.name]
    t = b["topics"][TOPIC]
    g = t["groups"][0]
    live = g["members"][0]
    live.update(stalled=True, idle_seconds=12.0)
    g["members"].append(dict(live, pid=4242424, alive=False, stalled=False, pending=7, owned=1))
    t["health"]["problems"] = [
        {"kind": "dead_member", "text": "group 'workers': member pid 4242424 died holding 7 deliveries"},
        {"kind": "redelivering", "text": "group 'workers': redelivering 3 messages/s"}]
    t["rates"]["dropped"] = 5.0
    b["topics"]["broken"] = {"damaged": "topic 'broken': bad magic", "health": {
        "status": "damaged", "problems": [{"kind": "damaged", "text": "topic 'broken': bad magic"}]}}
    r["buses"]["secret"] = {"path": None, "error": "[Errno 13] Permission denied"}
    lines = _lines(render(r, 80, 24))
    text = "\n".join(lines)
    assert all(len(line) <= 80 for line in lines)
    assert re.search(r"pid 4242424 .*DEAD", text)
    assert re.search(rf"pid {live['pid']} .*stalled 12s", text)
    assert "drop 5/s" in text
    assert re.search(r"broken .*damaged", text)
    assert "secret: [Errno 13] Permission denied" in text  # its own line
    footer = [line for line in lines if line.startswith("! ")]
    # most serious first: the damaged topic, the dead member, drops, then the rest
    # (a line is cut at 80 columns, where depends on the length of the session's pid)
    assert [f"{bus.name}/broken: topic 'broken': bad magic" in footer[0], "pid 4242424" in footer[1],
            "redelivering" in footer[2]] == [True] * 3, footer


def test_render_cuts_to_the_height(bus, report):
    r = copy.deepcopy(report)
    topics = r["buses"][bus.name]["topics"]
    for i in range(30):
        topics[f"t{i:02}"] = copy.deepcopy(topics[TOPIC])
    lines = _lines(render(r, 80, 12))
    assert len(lines) <= 12
    assert any(re.search(r"… \d+ more rows", line) for line in lines)
    assert _lines(render(r, 39, 24), 39) == ["terminal too small (39x24); need 40x10"]
    assert _lines(render(r, 80, 9)) == ["terminal too small (80x9); need 40x10"]
