"""Windows keyed by event time: exact aggregates for fixed event sequences with
out-of-order and late events; the stream over a topic fed by another process."""
import json
import subprocess
import sys
import os

import pytest

import shmbus
from shmbus import WindowResult as R, Windows

pytestmark = pytest.mark.timeout(60)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

EVENTS = [("a", 1, 1), ("a", 5, 2), ("b", 7, 10), ("a", 11, 3),
          ("a", 9, 4),     # out of order, on time: the watermark (9) has not closed [0, 10)
          ("b", 14, 5),    # watermark 12: [0, 10) closes (end 10 + lateness 1 <= 12)
          ("a", 8, 100),   # late: [0, 10) was emitted
          ("a", 25, 1)]    # watermark 23: [10, 20) closes


def run_all(w, events):
    out, late = [], []
    for k, t, v in events:
        results, was_late = w.add(k, t, v)
        out += results
        if was_late:
            late.append((k, t, v))
    return out, late


def test_tumbling_windows_with_a_watermark_and_lateness():
    w = Windows(10, delay=2, lateness=1)
    out, late = run_all(w, EVENTS)
    assert out == [R("a", 0, 10, 7, 3), R("b", 0, 10, 10, 1), R("a", 10, 20, 3, 1), R("b", 10, 20, 5, 1)]
    assert late == [("a", 8, 100)] and w.late == 1
    assert w.flush() == [R("a", 20, 30, 1, 1)]


def test_sliding_windows_count_an_event_in_every_window_that_holds_it():
    w = Windows(10, 5, init=list, add=lambda acc, v: acc + [v])
    out, _ = run_all(w, [("k", 1, "x"), ("k", 6, "y"), ("k", 12, "z")])
    assert out == [R("k", -5, 5, ["x"], 1), R("k", 0, 10, ["x", "y"], 2)]
    assert w.flush() == [R("k", 5, 15, ["y", "z"], 2), R("k", 10, 20, ["z"], 1)]


def test_bad_window_shapes_are_refused():
    for kwargs in (dict(size=0), dict(size=10, slide=20), dict(size=-1), dict(size=10, delay=-1)):
        with pytest.raises(shmbus.ConfigError):
            Windows(**kwargs)


def test_a_stream_over_a_topic_emits_the_same_windows_and_routes_late_events(bus, procs):
    for t in ("events", "totals", "late"):
        bus.create_topic(t, capacity=1 << 20)
    procs.start("p", "_stream_workers:send_events", bus_name=bus.name, topic="events", events=EVENTS)
    decode = lambda m: json.loads(m.value)  # noqa: E731
    with bus.consumer("events", group="stream", ack="manual", start="earliest") as c, \
            bus.producer("totals") as totals, bus.producer("late") as late:
        s = shmbus.WindowedStream(c, Windows(10, delay=2, lateness=1), totals,
                                  event_time=lambda m: decode(m)[1], key=lambda m: decode(m)[0],
                                  value=lambda m: decode(m)[2], late_output=late)
        assert procs.result("p") == len(EVENTS)
        s.run(seconds=20, idle=0.5)
    with bus.consumer("totals", start="earliest") as t:
        got = [json.loads(m.value) for m in t.poll_batch(100, timeout=1)]
    assert [(g["key"], g["start"], g["value"], g["count"]) for g in got] == [
        ("a", 0, 7, 3), ("b", 0, 10, 1), ("a", 10, 3, 1), ("b", 10, 5, 1), ("a", 20, 1, 1)]
    with bus.consumer("late", start="earliest") as lt:
        assert [decode(m) for m in lt.poll_batch(10, timeout=1)] == [["a", 8, 100]]
    g = next(g for g in bus.stats("events")["groups"] if g["name"] == "stream")
    assert g["lag"] == 0


@pytest.mark.parametrize("example", ["alerts", "user_totals"])
def test_the_stream_and_batch_examples_run(example):
    r = subprocess.run([sys.executable, "-m", f"shmbus.examples.{example}"], capture_output=True,
                       text=True, timeout=50, env=dict(os.environ, PYTHONPATH=ROOT))
    assert r.returncode == 0, r.stderr
    assert ("alerts raised" in r.stdout) if example == "alerts" else (
        "totals match the purchases: True" in r.stdout)
