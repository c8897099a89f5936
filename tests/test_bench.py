"""The side-by-side suite (benchmarks/suite.py) end to end with tiny runs, a peer
that loses messages reported as failing, and ``shmbus bench`` outside a checkout."""
import json
import os
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "benchmarks")
SHM = "/dev/shm"
TINY = ["--reps", "1", "--seconds", "0.05", "--no-floors"]

sys.path.insert(0, BENCH)
import workloads  # noqa: E402


def suite(*args, timeout=40):
    """Run the suite; (exit status, stdout, stderr, its pid)."""
    env = dict(os.environ, PYTHONPATH=ROOT, COLUMNS="200")
    p = subprocess.Popen([sys.executable, os.path.join(BENCH, "suite.py"), *args], cwd=ROOT,
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        pytest.fail(f"the suite hung:\n{out}\n{err}")
    return p.returncode, out, err, p.pid


def ours(pid):
    """The segments the suite run ``pid`` made (its buses are named bench-PID-...)."""
    return [n for n in os.listdir(SHM) if f"bench-{pid}-" in n]


@pytest.mark.timeout(60)
def test_suite_runs_end_to_end_and_writes_the_json(tmp_path):
    path = tmp_path / "r.json"
    rc, out, err, pid = suite("--vs", "multiprocessing.Queue", "--only", "1to1:64,ping",
                              "--json", str(path), *TINY)
    assert rc == 0, out + err
    assert "leaked" not in err, err
    assert ours(pid) == []
    doc = json.loads(path.read_text())
    assert set(doc) == {"schema", "command", "machine", "versions", "skipped", "results",
                        "latency", "floors"}
    assert doc["schema"] == 1 and "--only" in doc["command"]
    rows = {r["peer"]: r for r in doc["results"]}
    assert set(rows) == {"shmbus", "multiprocessing.Queue"}
    for r in rows.values():
        assert r["failures"] == [] and len(r["runs"]) == 1 and r["median"] > 0
        assert r["size"] == 64 and r["workload"] == "1to1"
    lat = {(x["peer"], x["mode"]) for x in doc["latency"]}
    assert lat == {(p, m) for p in rows for m in ("spin", "block")}
    assert all(x["p50_us"] <= x["p99_us"] <= x["p999_us"] for x in doc["latency"])
    assert "multiprocessing.Queue" in out and "shmbus ÷ peer" in out


LOSSY = """
    from peers import mp_queue

    NAME, DIST, RATE_HINT = "lossy", None, 20_000
    unsupported, open, close, receiver = (mp_queue.unsupported, mp_queue.open,
                                          mp_queue.close, mp_queue.receiver)

    class Lossy:
        def __init__(self, inner):
            self.inner, self.n = inner, 0

        def send(self, buf):
            self.n += 1
            if self.n % 10:  # every 10th message is dropped
                self.inner.send(buf)

        def close(self):
            self.inner.close()

    def sender(channel, w, index):
        return Lossy(mp_queue.sender(channel, w, index))
"""


@pytest.mark.timeout(60)
def test_a_peer_that_loses_messages_is_reported_as_failing(tmp_path):
    adapter = tmp_path / "lossy.py"
    adapter.write_text(textwrap.dedent(LOSSY))
    path = tmp_path / "r.json"
    rc, out, err, pid = suite("--vs", "shmbus", "--peer-path", str(adapter), "--only", "1to1:64",
                              "--deadline", "2", "--json", str(path), *TINY)
    assert rc == 0, out + err
    assert ours(pid) == []
    rows = {r["peer"]: r for r in json.loads(path.read_text())["results"]}
    assert rows["shmbus"]["failures"] == []
    lossy = rows["lossy"]
    assert lossy["median"] is None and lossy["runs"] == []
    assert lossy["failures"][0].startswith("lost messages or hung:"), lossy["failures"]
    assert "FAILED" in out


class _Stop:
    def is_set(self):
        return True


def _tally(stamps, **kw):
    w = workloads.Workload("t", "bytes", 64, len(stamps), **kw)
    make = workloads.payload_maker(64)
    msgs = iter([make(s) if isinstance(s, int) else s for s in stamps])
    rcv = type("R", (), {"recv": lambda self: next(msgs, None)})()
    return workloads.receive_loop(rcv, w, _Stop())


@pytest.mark.timeout(10)
def test_the_receive_loop_sees_reordered_duplicated_and_torn_messages():
    good = _tally([0, 1, 2, 3])
    assert (good["got"], good["bad"], good["out_of_order"]) == (4, 0, 0)
    assert good["seq_sum"] == workloads.expected_sum(workloads.Workload("t", "bytes", 64, 4))
    assert _tally([0, 2, 1, 3])["out_of_order"] == 1
    assert _tally([0, 1, 1, 3])["out_of_order"] == 1
    torn = workloads.payload_maker(64)(2)[:-1] + b"\x01"
    assert _tally([0, 1, torn, 3])["bad"] == 1


@pytest.mark.timeout(30)
def test_shmbus_bench_needs_a_source_checkout(tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT)
    p = subprocess.run([sys.executable, "-m", "shmbus", "bench", "--suite-dir", str(tmp_path)],
                       capture_output=True, text=True, timeout=20, env=env)
    assert p.returncode == 1
    assert p.stderr.count("\n") == 1 and "source checkout" in p.stderr and "benchmarks/" in p.stderr


@pytest.mark.timeout(10)
def test_the_pacer_learns_spinning_and_blocking_round_trips_apart():
    import harness
    import peers
    shmbus_peer = peers.load("shmbus")
    spin, block = (workloads.Workload("ping", "ping", 64, 0, spin=s) for s in (True, False))
    pacer = harness.Pacer(1.0)
    pacer.observe(shmbus_peer, spin.with_count(1000), 300_000.0)
    pacer.observe(shmbus_peer, workloads.Workload("ping", "ping", 1024, 0, spin=True), 280_000.0)
    # a blocking round trip is ~20x slower: what spinning measured must not size it
    assert pacer.count(shmbus_peer, block) < pacer.count(shmbus_peer, spin) / 2
