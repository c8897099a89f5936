"""Children of the fuzz test (tests/test_fuzz.py), run as scripts:

    python _fuzz_workers.py setup BUS SCENARIO
    python _fuzz_workers.py victim BUS SCENARIO [DAMAGE_JSON]

``setup`` builds a live topic (messages published, groups with committed
offsets, a manual-ack group holding deliveries) and leaves without closing
anything, as a process that dies would: what it held stays in the segments for
the next process to take over.  ``victim`` opens the damaged bus and does what an
application does (open the topic, send, poll and poll_batch with manual acks,
ack, nack, lag, stats, topic_info, close).  Each step that raises a ShmbusError
is reported as such; any other exception is a bug: the victim then prints the
traceback and exits with status 3.  The last line on stdout is a JSON report.

A victim given DAMAGE_JSON applies it itself once its producer and consumer
are open ("live" damage): a list of [segment name, file offset, hex bytes] that
it writes into the segment files while it has them mapped.
"""
import json
import os
import sys
import time
import traceback

import numpy as np

import shmbus

TOPIC = "fz"
DEAD = "fz.dead"
SHM = "/dev/shm"

# Each scenario: how the topic is made, and how the victim joins its groups.
SCENARIOS = {
    # two partitions, a named auto-ack group, a manual-ack group of competing
    # consumers (ordering none) holding deliveries, a private group whose owner died
    "groups": dict(topic=dict(partitions=2, capacity=4096, max_message_size=1024, on_full="block"),
                   work=dict(ack="manual", ordering="none", max_deliveries=3, dead_letter=DEAD),
                   audit=dict(ack="auto", ordering="partition")),
    # one partition, retention=log and drop_oldest: the ring has wrapped several
    # times; a manual-ack group under ordering=partition replays from the start
    "log": dict(topic=dict(partitions=1, capacity=1024, max_message_size=256, on_full="drop_oldest",
                           retention="log"),
                work=dict(ack="manual", ordering="partition", max_deliveries=2, dead_letter=DEAD),
                audit=dict(ack="auto", ordering="partition", tethered=False)),
    # one partition, on_full=error, a producer killed between claim and commit
    # (its claim is recovered by the victim), a tracked group with a full window
    "claim": dict(topic=dict(partitions=1, capacity=2048, max_message_size=512, on_full="error",
                             max_messages=16),
                  work=dict(ack="manual", ordering="partition"),
                  audit=dict(ack="auto", ordering="none")),
}

LIVENESS = 0.02  # seconds: claims and members of the dead are taken over at once


def value(i):
    return b"m%04d-" % i + bytes([65 + i % 26]) * (i % 37)


def setup(bus_name, scenario):
    sc = SCENARIOS[scenario]
    bus = shmbus.Bus(bus_name, liveness_timeout=LIVENESS)
    bus.create_topic(TOPIC, **sc["topic"])
    bus.create_topic(DEAD, capacity=4096, max_message_size=1024, on_full="drop_oldest",
                     retention="log")
    keep = []  # never closed: this process leaves as if it died
    work = bus.consumer(TOPIC, group="work", start="earliest", ack_timeout=60.0, **sc["work"])
    audit = bus.consumer(TOPIC, group="audit", start="earliest", **sc["audit"])
    private = bus.consumer(TOPIC, start="earliest", tethered=scenario != "log")
    keep += [work, audit, private]
    p = bus.producer(TOPIC)
    keep.append(p)
    n = {"groups": 12, "log": 30, "claim": 10}[scenario]
    for i in range(n):
        if i % 5 == 3:
            p.send_array(np.arange(i, dtype=np.int16).reshape(-1, 1), key=b"arr%d" % i)
        elif i % 3 == 0:
            p.send(value(i), key=b"k%d" % i, headers={"n": str(i), "b": b"\x00\xff"})
        else:
            p.send(value(i))
        if scenario == "log" and i % 7 == 6:
            got = work.poll_batch(3, timeout=0.5)
            work.ack(got[:1])
    got = work.poll_batch(6, timeout=1.0)
    assert got, "setup: the work group got nothing"
    work.ack(got[:2])
    if len(got) > 2:
        work.nack(got[2])  # ready to go again, delivery count 1
    # the rest stays delivered to this member, which is about to vanish
    for _ in range(5):
        audit.poll(timeout=0.2)
    for _ in range(3):
        private.poll(timeout=0.2)
    if scenario == "claim":
        # a producer that dies holding a claim (its offset reserved, never committed)
        os.environ["SHMBUS_FAULT"] = "after_claim:kill"
        dying = bus.producer(TOPIC)
        keep.append(dying)
        dying.send(b"never committed")
    sys.stdout.flush()
    os._exit(0)


def touch(msg):
    """Reads every field of a message, as an application would."""
    out = [msg.partition, msg.offset, msg.timestamp, msg.delivery_count, msg.lost_before,
           msg.value, msg.key, msg.headers, bytes(msg.view())]
    if "shmbus.array" in msg._raw_headers():
        out.append(msg.array().sum())
    return out


class Run:
    """Steps of the victim, each reported: ok, or the ShmbusError it raised."""

    def __init__(self):
        self.steps = []
        self.started = time.monotonic()

    def step(self, name, fn, *args):
        start = time.monotonic()
        try:
            out = fn(*args)
        except shmbus.ShmbusError as e:
            self.steps.append([name, type(e).__name__, str(e)[:200], time.monotonic() - start])
            return None, False
        self.steps.append([name, "ok", "", round(time.monotonic() - start, 3)])
        return out, True


def apply_writes(writes):
    for seg, at, data in writes:
        fd = os.open(os.path.join(SHM, seg), os.O_WRONLY)
        try:
            os.pwrite(fd, bytes.fromhex(data), at)
        finally:
            os.close(fd)


def victim(bus_name, scenario, live=None):
    sc = SCENARIOS[scenario]
    run = Run()
    report = {"steps": run.steps, "own_seen": False, "received": 0}
    bus, ok = run.step("bus", lambda: shmbus.Bus(bus_name, liveness_timeout=LIVENESS))
    if not ok:
        return report
    try:
        # the first step maps the topic: if that fails, every later one would fail alike
        _, ok = run.step("topic_info", bus.topic_info, TOPIC)
        if not ok:
            return report
        run.step("stats", bus.stats, TOPIC)
        p, _ = run.step("producer", lambda: bus.producer(TOPIC, timeout=0.2))
        work, _ = run.step("consumer", lambda: bus.consumer(
            TOPIC, group="work", ack_timeout=1.0, **sc["work"]))
        if live:
            apply_writes(live)
        own = b"own-%d" % os.getpid()
        if p is not None:
            run.step("send", lambda: p.send(own, key=b"own", headers={"from": "victim"}))
            run.step("send_many", lambda: p.send_many([b"a", b"bb", b"ccc"]))
        received = []
        if work is not None:
            def poll_batch():
                got = work.poll_batch(8, timeout=0.05)
                for m in got:
                    received.append(touch(m))
                work.ack(got[::2])
                for m in got[1::2]:
                    work.nack(m)
                return len(got)

            def poll():
                for _ in range(4):
                    m = work.poll(timeout=0.02)
                    if m is not None:
                        received.append(touch(m))
                        work.ack(m)

            run.step("poll_batch", poll_batch)
            run.step("poll", poll)
            run.step("lag", work.lag)
        audit, _ = run.step("audit", lambda: bus.consumer(TOPIC, group="audit", **sc["audit"]))
        reader, _ = run.step("reader", lambda: bus.consumer(TOPIC, start="earliest",
                                                            tethered=scenario != "log"))
        for name, c in (("audit_poll", audit), ("reader_poll", reader)):
            if c is None:
                continue

            def drain(c=c):
                for _ in range(40):
                    got = c.poll_batch(16, timeout=0.05)
                    if not got:
                        break
                    for m in got:
                        t = touch(m)
                        received.append(t)
                        if t[5] == own:
                            report["own_seen"] = True
                return True

            run.step(name, drain)
        if reader is not None:
            run.step("reader_lag", reader.lag)
        run.step("stats_after", bus.stats, TOPIC)
        for name, h in (("close_work", work), ("close_audit", audit), ("close_reader", reader),
                        ("close_producer", p)):
            if h is not None:
                run.step(name, h.close)
        report["received"] = len(received)
    finally:
        run.step("bus_close", bus.close)
    return report


def main(argv):
    cmd, bus_name, scenario = argv[:3]
    if cmd == "setup":
        setup(bus_name, scenario)
        return 0
    live = json.loads(argv[3]) if len(argv) > 3 else None
    try:
        report = victim(bus_name, scenario, live)
    except BaseException:
        traceback.print_exc()
        sys.stderr.flush()
        return 3
    print(json.dumps(report, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
