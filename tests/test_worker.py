"""Push consumers (Consumer.subscribe) and Worker process pools: ack on success,
retries with the policy's delays, permanent failures to the dead letters at once,
a killed member's message delivered again; the ``shmbus worker`` command."""
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

import shmbus
from _handlers import lines, record, wait_for

pytestmark = pytest.mark.timeout(60)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def topic(bus):
    bus.create_topic("jobs", partitions=2, capacity=2**16)
    return "jobs"


def send(bus, topic, *values):
    with bus.producer(topic) as p:
        for v in values:
            p.send(v)


def test_transient_failures_are_retried_with_the_policy_delays(bus, topic, tmp_path):
    log = tmp_path / "log"
    retrying = shmbus.Retrying(transient=shmbus.ExponentialBackoff(base=0.3, factor=2, jitter=0,
                                                                   max_retries=5))
    w = shmbus.Worker(bus.name, topic, "w", record, 1, retrying=retrying).start()
    try:
        send(bus, topic, f"{log}|flaky".encode())
        got = wait_for(log, 3, 20)
        assert [d for _, d, _ in got] == [1, 2, 3]
        gaps = [b[2] - a[2] for a, b in zip(got, got[1:])]
        assert 0.25 <= gaps[0] <= 0.3 + 1.0, gaps
        assert 0.55 <= gaps[1] <= 0.6 + 1.0, gaps
        time.sleep(0.5)
        assert len(lines(log)) == 3  # acked after the success: not delivered again
    finally:
        w.stop()
    g = next(g for g in bus.stats(topic)["groups"] if g["name"] == "w")
    assert (g["acked"], g["lag"]) == (1, 0)


def test_a_permanent_failure_goes_to_the_dead_letters_at_once(bus, topic, tmp_path):
    log = tmp_path / "log"
    w = shmbus.Worker(bus.name, topic, "w", "_handlers:record", 2, dead_letter="dead").start()
    try:
        send(bus, topic, f"{log}|bad".encode(), f"{log}|ok".encode())
        with _later(bus) as d:
            m = d.poll(timeout=10)
            assert m is not None and m.value == f"{log}|bad".encode()
            h = m.headers
            assert h["shmbus.reason"] == "rejected" and h["shmbus.delivery_count"] == "1"
            assert h["shmbus.error"] == "ValueError: cannot parse" and h["shmbus.error_type"] == "ValueError"
        assert sorted(d for _, d, _ in wait_for(log, 2, 10)) == [1, 1]  # each delivered once
    finally:
        w.stop()


def _later(bus, timeout=10):
    """A consumer of the dead-letter topic once a member created it."""
    deadline = time.monotonic() + timeout
    while "dead" not in bus.topics():
        assert time.monotonic() < deadline, "no dead-letter topic"
        time.sleep(0.05)
    return bus.consumer("dead", start="earliest")


def test_a_killed_member_leaves_its_message_to_another(bus, topic, tmp_path):
    log = tmp_path / "log"
    w = shmbus.Worker(bus.name, topic, "w", record, 2).start()
    try:
        send(bus, topic, f"{log}|hang".encode())
        first = wait_for(log, 1, 15)
        assert first and first[0][1] == 1
        os.kill(first[0][0], signal.SIGKILL)
        got = wait_for(log, 2, 15)
        assert len(got) == 2 and got[1][1] == 2 and got[1][0] != first[0][0]
    finally:
        w.stop()
    assert w.restarts == 0


def test_run_replaces_a_dead_member(bus, topic):
    w = shmbus.Worker(bus.name, topic, "w", record, 1)
    t = threading.Thread(target=w.run, args=(4,))
    t.start()
    try:
        deadline = time.monotonic() + 10
        while not w.pids and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(w.pids[0], signal.SIGKILL)
        while w.restarts == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert w.restarts == 1
    finally:
        t.join(15)
    assert not t.is_alive() and w.pids == []


@pytest.mark.parametrize("make, error", [
    (lambda b, t: shmbus.Worker(b, t, "w", record, 0), shmbus.ConfigError),
    (lambda b, t: shmbus.Worker(b, t, "w", record, "2"), TypeError),
    (lambda b, t: shmbus.Worker(b, t, "w", "no_such_module:f"), shmbus.ConfigError),
    (lambda b, t: shmbus.Worker(b, t, "w", "_handlers"), shmbus.ConfigError),
    (lambda b, t: shmbus.Worker(b, t, "w", 42), shmbus.ConfigError),
    (lambda b, t: shmbus.Worker(b, "missing", "w", record), shmbus.TopicNotFoundError),
    (lambda b, t: shmbus.Worker(b, t, "w", record, ordering="random"), shmbus.ConfigError),
    (lambda b, t: shmbus.Worker(b, t, "w", record, retrying=3), TypeError),
])
def test_bad_worker_settings_fail_at_once(bus, topic, make, error):
    with pytest.raises(error):
        make(bus.name, topic)


def test_subscribe_acks_retries_and_stops(bus, topic):
    seen = []

    def callback(msg):
        seen.append((msg.value, msg.delivery_count))
        if msg.delivery_count == 1 and msg.value == b"flaky":
            raise TimeoutError("slow service")

    c = bus.consumer(topic, group="g", ack="manual", ordering="none", start="earliest")
    sub = c.subscribe(callback, shmbus.Retrying(transient=shmbus.FixedInterval(0.1, max_retries=3)))
    try:
        send(bus, topic, b"flaky", b"fine")
        deadline = time.monotonic() + 10
        while len(seen) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert sorted(seen) == [(b"fine", 1), (b"flaky", 1), (b"flaky", 2)]
        assert (sub.stats.handled, sub.stats.retried, sub.stats.dead) == (2, 1, 0)
        assert isinstance(sub.stats.last_error, TimeoutError)
    finally:
        assert sub.stop(timeout=5) and not sub.running
        c.close()


def test_subscribe_holds_one_message_while_the_callback_is_busy(bus, topic):
    release = threading.Event()
    seen = []

    def callback(msg):
        seen.append(msg.value)
        release.wait(10)

    c = bus.consumer(topic, group="g", ack="manual", start="earliest")
    with c.subscribe(callback) as sub:
        send(bus, topic, *[b"%d" % i for i in range(10)])
        time.sleep(0.5)
        assert len(seen) == 1 and c.lag() == 10  # backpressure: nothing taken ahead
        release.set()
        deadline = time.monotonic() + 10
        while len(seen) < 10 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(seen) == 10
    assert not sub.running
    c.close()
    with pytest.raises(shmbus.ClosedError):
        c.subscribe(callback)


def test_the_worker_command(bus, topic, tmp_path):
    log = tmp_path / "log"
    send(bus, topic, f"{log}|ok".encode(), f"{log}|ok".encode())
    env = dict(os.environ, PYTHONPATH=ROOT)
    cmd = [sys.executable, "-m", "shmbus", "worker", "_handlers:record", "--bus", bus.name,
           "--topic", topic, "--group", "cli", "-c", "2", "--seconds", "3"]
    r = subprocess.run(cmd, cwd=os.path.dirname(__file__), env=env, capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, r.stderr
    assert sorted(d for _, d, _ in lines(log)) == [1, 1]
    bad = subprocess.run(cmd[:4] + ["_handlers:nothing"] + cmd[5:], cwd=os.path.dirname(__file__),
                         env=env, capture_output=True, text=True, timeout=30)
    assert bad.returncode == 1 and "nothing" in bad.stderr
    usage = subprocess.run(cmd[:-4] + ["-c", "0"], cwd=os.path.dirname(__file__), env=env,
                           capture_output=True, text=True, timeout=30)
    assert usage.returncode == 2
