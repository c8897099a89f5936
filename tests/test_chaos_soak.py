"""The chaos soak runner (tools/chaos_soak.py) for a few seconds: producers, a
fan-out subscriber and two work groups, with SIGKILLs and SIGSTOPs; the history
checker must find every promise kept.  And the checker itself must catch a
falsified history."""
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUNNER = os.path.join(ROOT, "tools", "chaos_soak.py")


def run(bus_name, *args, timeout):
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, RUNNER, "--bus", bus_name, *args], env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.timeout(90)
def test_chaos_soak_holds(bus_name):
    r = run(bus_name, "--seconds", "15", "--seed", "7", timeout=80)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "ok: every check held" in r.stdout
    assert "kills" in r.stdout


@pytest.mark.timeout(60)
def test_chaos_soak_catches_a_lost_message(bus_name):
    r = run(bus_name, "--seconds", "6", "--seed", "8", "--fault", "lose", timeout=50)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "returned sends never processed" in r.stdout
    kept = [line.split()[-1] for line in r.stdout.splitlines() if line.startswith("records kept in")]
    assert kept
    shutil.rmtree(kept[0], ignore_errors=True)
