"""Event store and CQRS: optimistic concurrency between processes, aggregates
rebuilt exactly from replay and from a snapshot plus replay (also after the
disk bus is reopened), a read model rebuilt by a new group equal to the live one."""
import os
import subprocess
import sys

import pytest

import shmbus
from shmbus import EventStore, Projection, VersionConflictError

pytestmark = pytest.mark.timeout(90)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def balance(state, event):
    kind, amount = event
    return (state or 0) + (amount if kind == "deposit" else -amount)


def test_append_load_and_a_stale_expected_version(bus):
    with EventStore(bus, "bank", capacity=1 << 20) as s:
        assert s.append("acct-1", [("deposit", 100)], expected_version=0) == 1
        assert s.append("acct-1", [("withdraw", 30), ("deposit", 5)], expected_version=1) == 3
        assert s.load("acct-1") == [("deposit", 100), ("withdraw", 30), ("deposit", 5)]
        assert s.load("acct-1", after=2) == [("deposit", 5)]
        with pytest.raises(VersionConflictError, match="at version 3, not 1") as e:
            s.append("acct-1", [("withdraw", 1000)], expected_version=1)
        assert (e.value.expected, e.value.actual) == (1, 3)
        assert s.version("acct-1") == 3 and s.rebuild("acct-1", balance) == (3, 75)
        assert s.version("nobody") == 0 and s.aggregates() == ["acct-1"]
        with pytest.raises(ValueError):
            s.append("acct-1", [], expected_version=3)
        with pytest.raises(TypeError):
            s.append("acct-1", [("deposit", 1)], expected_version="3")


def test_two_processes_appending_never_lose_or_double_an_event(bus, procs):
    accounts = ["a", "b"]
    with EventStore(bus, "bank", capacity=1 << 22) as s:
        for label in ("t1", "t2"):
            procs.start(label, "_event_workers:teller", bus_name=bus.name, path=None, store="bank",
                        accounts=accounts, n=200, amount=1, think=0.0005)
        conflicts = procs.result("t1") + procs.result("t2")
        assert s.version("a") + s.version("b") == 400  # every deposit, once
        assert s.rebuild("a", balance)[1] + s.rebuild("b", balance)[1] == 400
        assert sorted(s.load("a") + s.load("b")) == [("deposit", 1)] * 400
    assert conflicts > 0  # the tellers did race (each then read again and retried)


def test_rebuild_from_a_snapshot_equals_a_full_replay_also_after_a_restart(tmp_path, bus_name):
    with shmbus.Bus(bus_name, path=str(tmp_path)) as bus:
        with EventStore(bus, "bank", capacity=1 << 20) as s:
            v = 0
            for i in range(120):
                v = s.append("acct", [("deposit", i)] if i % 3 else [("withdraw", i // 2)], v)
                if v == 60:
                    s.save_snapshot("acct", *s.rebuild("acct", balance))
            full = s.rebuild("acct", balance, use_snapshot=False)
            assert s.rebuild("acct", balance) == full == (120, sum(
                i if i % 3 else -(i // 2) for i in range(120)))
    with shmbus.Bus(bus_name, path=str(tmp_path)) as bus:  # reopened: the log is on disk
        with EventStore(bus, "bank", capacity=1 << 20) as s:
            assert s.rebuild("acct", balance) == full
            assert s.rebuild("acct", lambda st, e: (st or 0) + 1, use_snapshot=False) == (120, 120)
            with pytest.raises(VersionConflictError):
                s.append("acct", [("deposit", 1)], expected_version=60)
        bus.unlink()


def test_a_read_model_rebuilt_by_a_new_group_equals_the_live_one(bus, procs):
    def totals(state, account, event):
        state[account] = balance(state.get(account), event)
        return state

    with EventStore(bus, "bank", capacity=1 << 22) as s, \
            Projection(bus, "bank", "balances-v1", totals) as live:
        s.append("x", [("deposit", 7)], 0)
        live.catch_up(timeout=1)
        procs.start("t", "_event_workers:teller", bus_name=bus.name, path=None, store="bank",
                    accounts=["x", "y", "z"], n=150, amount=2)
        procs.result("t")
        live.catch_up(timeout=1)
        with Projection(bus, "bank", "balances-v2", totals) as rebuilt:
            rebuilt.catch_up(timeout=1)
            assert rebuilt.state == live.state == {"x": 7 + 100, "y": 100, "z": 100}
            assert rebuilt.version == live.version == {"x": 51, "y": 50, "z": 50}


def test_the_bank_example_runs():
    r = subprocess.run([sys.executable, "-m", "shmbus.examples.bank"], capture_output=True,
                       text=True, timeout=60, env=dict(os.environ, PYTHONPATH=ROOT))
    assert r.returncode == 0, r.stderr
    assert "read model rebuilt by a new group equals the live one: True" in r.stdout
