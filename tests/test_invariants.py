"""DESIGN.md invariant 6: send, poll and ack make no system call when nobody waits."""
import os
import shutil
import subprocess
import sys

import pytest

CHILD = r'''
import os, sys, time
import shmbus
bus = shmbus.Bus(sys.argv[1])
bus.create_topic("t", capacity=1 << 24)
c = bus.consumer("t")
p = bus.producer("t")
os.write(2, b"MARK-START\n")
for i in range(5000):
    p.send(b"x" * 64)
    p.send_many([b"y" * 64] * 3)
    c.poll(0).value
    c.poll_batch(3, timeout=0)
os.write(2, b"MARK-END\n")
c.close()
p.close()
bus.unlink()
'''


GROUP_CHILD = r'''
import os, sys, time
import shmbus
bus = shmbus.Bus(sys.argv[1])
bus.create_topic("t", partitions=2, capacity=1 << 24)
a = bus.consumer("t", group="g", ack="manual", ordering="none")
b = bus.consumer("t", group="g", ack="manual", ordering="none")
auto = bus.consumer("t", group="h", ordering="none")
p = bus.producer("t")
os.write(2, b"MARK-START\n")
end = time.monotonic() + 0.8  # long enough for the periodic looks at liveness
while time.monotonic() < end:
    p.send_many([b"y" * 64] * 4)
    m = a.poll(0)
    a.ack(m)
    b.ack(b.poll_batch(2, timeout=0))
    m = a.poll(0)
    a.nack(m)
    a.ack(a.poll_batch(10, timeout=0))
    auto.poll_batch(4, timeout=0)
os.write(2, b"MARK-END\n")
for c in (a, b, auto, p):
    c.close()
bus.unlink()
'''


@pytest.mark.timeout(120)
@pytest.mark.parametrize("child", [CHILD, GROUP_CHILD], ids=["private", "group"])
def test_send_poll_and_ack_make_no_system_call_when_nobody_waits(bus_name, tmp_path, child):
    strace = shutil.which("strace")
    if strace is None:
        pytest.skip("strace is not installed")
    trace = tmp_path / "trace.txt"
    run = subprocess.run([strace, "-f", "-o", str(trace), sys.executable, "-c", child, bus_name],
                         capture_output=True, text=True, timeout=100)
    if run.returncode != 0 and "ptrace" in run.stderr:
        pytest.skip("strace cannot trace here: " + run.stderr.strip()[:200])
    assert run.returncode == 0, run.stderr
    lines = trace.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if "MARK-START" in line)
    end = next(i for i, line in enumerate(lines) if "MARK-END" in line)
    calls = [line for line in lines[start + 1:end] if "(" in line and "---" not in line]
    assert calls == [], f"{len(calls)} system calls on the hot path, e.g. {calls[:5]}"
    assert not os.path.exists(f"/dev/shm/shmbus:{bus_name}")
