"""Deduplicator: ids remembered within a window, in a topic of the bus, so that a
consumer that restarts in another process still knows what it processed."""
import os
import subprocess
import sys
import time

import pytest

import shmbus

pytestmark = pytest.mark.timeout(60)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CHILD = """
import sys, shmbus
with shmbus.Bus(sys.argv[1]) as bus, shmbus.Deduplicator(bus, "billing") as d:
    print(d.seen("order-1"), d.seen(b"order-2"), d.first("order-3"), d.first("order-1"))
"""


def test_first_seen_and_mark(bus):
    with shmbus.Deduplicator(bus, "billing", window=60) as d:
        assert d.first("order-1") and not d.first("order-1") and not d.first(b"order-1")
        assert not d.seen("order-2")
        d.mark("order-2")
        assert d.seen("order-2") and len(d) == 2


def test_the_memory_survives_a_restart_in_another_process(bus):
    with shmbus.Deduplicator(bus, "billing") as d:
        d.mark("order-1")
        assert d.first("order-2")
    r = subprocess.run([sys.executable, "-c", CHILD, bus.name], env=dict(os.environ, PYTHONPATH=ROOT),
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["True", "True", "True", "False"]
    with shmbus.Deduplicator(bus, "billing") as d:  # and what the child marked, here
        assert d.seen("order-3")


def test_ids_are_forgotten_after_the_window(bus):
    with shmbus.Deduplicator(bus, "short", window=0.3) as d:
        d.mark("x")
        assert d.seen("x")
        time.sleep(0.5)
        assert not d.seen("x") and len(d) == 0
        assert d.first("x")


def test_two_members_share_what_was_done(bus):
    with shmbus.Deduplicator(bus, "g") as a, shmbus.Deduplicator(bus, "g") as b:
        assert a.first("m-1")
        assert not b.first("m-1")


@pytest.mark.parametrize("make, error", [
    (lambda bus: shmbus.Deduplicator(bus, "x", window=0), shmbus.ConfigError),
    (lambda bus: shmbus.Deduplicator(bus, "x", window=-1), shmbus.ConfigError),
    (lambda bus: shmbus.Deduplicator(bus, "bad name"), shmbus.InvalidNameError),
    (lambda bus: shmbus.Deduplicator(bus, "x" * 100), shmbus.InvalidNameError),
    (lambda bus: shmbus.Deduplicator(bus, 5), TypeError),
])
def test_bad_settings(bus, make, error):
    with pytest.raises(error):
        make(bus)


def test_bad_ids(bus):
    with shmbus.Deduplicator(bus, "x") as d:
        with pytest.raises(TypeError):
            d.first(42)
        with pytest.raises(TypeError):
            d.mark(None)
