"""The basic round trip in one process, and the demo."""
import subprocess
import sys

import pytest

import shmbus


def test_send_then_poll_returns_the_message(bus):
    bus.create_topic("t")
    with bus.consumer("t") as c, bus.producer("t") as p:
        off = p.send(b"hello", key="k", headers={"a": "b", "c": b"d"})
        assert off == shmbus.Offset(0, 0)
        m = c.poll(timeout=1.0)
        assert (m.value, m.key, m.headers, m.partition, m.offset) == (b"hello", b"k", {"a": "b", "c": b"d"}, 0, 0)
        assert m.topic == "t" and m.delivery_count == 1 and m.lost_before == 0
        assert c.poll(timeout=0) is None


@pytest.mark.timeout(120)
def test_the_demo_runs_and_passes():
    run = subprocess.run([sys.executable, "-m", "shmbus", "demo", "--seconds", "1"],
                         capture_output=True, text=True, timeout=100)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "each message once" in run.stdout
