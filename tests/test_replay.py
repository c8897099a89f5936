"""Named groups and manual acks on retention="log" topics, and seek for groups
that track their deliveries: a late group replays what the log kept, a replay
the producer laps counts what it lost, the owner of a partition moves the
group, and what is not its to move is refused.  Every wait is bounded."""
import pytest

import shmbus

R = "_replay_workers:"
pytestmark = pytest.mark.timeout(120)


def send(bus, topic, values, partition=None):
    with bus.producer(topic) as p:
        for v in values:
            p.send(b"%d" % v, partition=partition)


def drain(c, ack=False, n=1000, timeout=0.3):
    got = []
    while True:
        msgs = c.poll_batch(n, timeout=timeout)
        if not msgs:
            return got
        got += [int(m.value) for m in msgs]
        if ack:
            c.ack(msgs)


def committed(bus, topic, group, partition=0):
    g = [x for x in bus.stats(topic)["groups"] if x["name"] == group][0]
    return g["partitions"][partition]["committed"]


def test_a_late_group_replays_everything_the_log_kept(bus, procs):
    bus.create_topic("t", capacity=2**16, retention="log", max_messages=1024)
    with bus.consumer("t", group="first", start="earliest") as c:
        send(bus, "t", range(500))
        assert drain(c) == list(range(500))  # consumed: kept all the same
    for group, ack in (("late", "auto"), ("audit", "manual")):
        procs.start(group, R + "read_group", bus_name=bus.name, topic="t", group=group, ack=ack)
        got, lost = procs.result(group)
        assert got == list(range(500)) and lost == 0
        assert committed(bus, "t", group) == 500
    # a group that exists goes on where it is
    procs.start("again", R + "read_group", bus_name=bus.name, topic="t", group="late")
    assert procs.result("again") == ([], 0)


def test_a_replay_the_producer_laps_counts_what_it_lost(bus):
    """A group replaying below the head holds nothing: the producer laps it,
    and what it gets plus what it is told it lost is everything from its start."""
    bus.create_topic("t", capacity=2**12, retention="log", max_messages=64)
    with bus.consumer("t", group="keeper", start="earliest") as k:
        send(bus, "t", range(60))
        assert len(drain(k)) == 60
        with bus.consumer("t", group="replay", start="earliest", ack="manual") as c:
            first = c.poll(timeout=1)
            assert int(first.value) == 0
            c.ack(first)
            with bus.producer("t", timeout=2.0) as p:  # never held back by "replay"
                for v in range(60, 400):
                    p.send(b"%d" % v)
                    if v % 16 == 0:
                        drain(k, timeout=0)
            got, lost = [], 0
            while True:
                msgs = c.poll_batch(100, timeout=0.3)
                if not msgs:
                    break
                for m in msgs:
                    try:
                        got.append(int(m.value))
                    except shmbus.MessageReleasedError:
                        lost += 1  # overwritten between poll and read
                    lost += m.lost_before
                c.ack(msgs)
    assert got == sorted(got) and got[-1] == 399
    assert 1 + len(got) + lost == 400, (len(got), lost)
    assert lost > 0


def test_the_owner_seeks_its_partition_for_the_group(bus):
    bus.create_topic("t", partitions=2, capacity=2**16, retention="log")
    for i in (0, 1):
        send(bus, "t", range(100 * i, 100 * i + 50), partition=i)
    with bus.consumer("t", group="g", start="earliest", ack="manual") as c:
        got = drain(c, ack=True)
        assert sorted(got) == list(range(50)) + list(range(100, 150))
        c.seek(0, 40)
        assert drain(c, ack=True) == list(range(40, 50))
        assert committed(bus, "t", "g", 0) == 50
        c.seek(1, 10)
        c.seek(1, 5)  # again, further back: what was in flight is abandoned
        assert committed(bus, "t", "g", 1) == 5
        assert drain(c, ack=True) == list(range(105, 150))
        c.seek_to_beginning()
        first = drain(c)  # not acked: still in flight when the consumer closes
        assert sorted(first) == list(range(50)) + list(range(100, 150))
        c.seek_to_end()
        assert drain(c) == [] and c.lag() == 0
        with pytest.raises(shmbus.ConfigError):
            c.seek(2, 0)
        with pytest.raises(shmbus.ConfigError):
            c.seek(0, 51)


def test_only_the_owner_moves_a_partition_and_ordering_none_cannot(bus):
    bus.create_topic("t", partitions=2, capacity=2**16, retention="log")
    send(bus, "t", range(10), partition=0)
    send(bus, "t", range(10), partition=1)
    with bus.consumer("t", group="g", start="earliest") as a, \
            bus.consumer("t", group="g", start="earliest") as b:
        a.poll_batch(100, timeout=0.3)
        b.poll_batch(100, timeout=0.3)
        a.poll_batch(100, timeout=0.3)
        owners = {p["owner"] for p in
                  [x for x in bus.stats("t")["groups"] if x["name"] == "g"][0]["partitions"]}
        assert len(owners) == 2  # one partition each
        refused = 0
        for i in (0, 1):
            try:
                a.seek(i, 0)
            except shmbus.ConfigError:
                refused += 1
        assert refused == 1
    with bus.consumer("t", group="n", ordering="none") as c, pytest.raises(shmbus.ConfigError):
        c.seek(0, 0)


def test_group_seek_on_a_consumed_topic_goes_forward_and_back_to_committed(bus):
    bus.create_topic("t", capacity=2**16)
    with bus.consumer("t", group="g", start="earliest", ack="manual") as c:
        send(bus, "t", range(100))
        msgs = c.poll_batch(20, timeout=1)
        c.ack(msgs[:10])  # committed 10; 10..19 in flight
        c.seek(0, 0)  # back no further than committed
        assert drain(c, ack=True, n=5)[:3] == [10, 11, 12]
        c.seek(0, 90)  # forward: 90.. only
        send(bus, "t", [100])
    with bus.consumer("t", group="g", ack="manual") as c:
        assert drain(c, ack=True) in ([], [100])


def test_manual_private_consumer_seeks(bus):
    bus.create_topic("t", capacity=2**16, retention="log")
    send(bus, "t", range(20))
    with bus.consumer("t", ack="manual", start="earliest") as c:
        assert drain(c, ack=True) == list(range(20))
        c.seek(0, 15)
        assert drain(c, ack=True) == list(range(15, 20))
        c.seek_to_time(0)
        assert drain(c)[:2] == [0, 1]


def test_acking_what_a_seek_abandoned_does_nothing(bus):
    bus.create_topic("t", capacity=2**16, retention="log")
    send(bus, "t", range(10))
    with bus.consumer("t", group="g", start="earliest", ack="manual") as c:
        old = c.poll_batch(10, timeout=1)
        assert [int(m.value) for m in old] == list(range(10))
        c.seek(0, 0)
        again = c.poll_batch(10, timeout=1)
        assert [int(m.value) for m in again] == list(range(10))
        c.ack(old)  # the replay is not done by the old messages' acks
        c.ack(old[0])
        c.nack(old[1])
        assert committed(bus, "t", "g") == 0
        c.ack(again)
        assert committed(bus, "t", "g") == 10


@pytest.mark.parametrize("others", [0, 1])
def test_a_seek_back_on_a_log_topic_never_holds_the_producers(bus, others):
    """With or without another group, a group that goes back below what the
    groups consumed holds nothing: the producer laps it."""
    bus.create_topic("t", capacity=2**12, retention="log", max_messages=64)
    groups = [bus.consumer("t", group=f"o{k}", start="earliest") for k in range(others)]
    try:
        with bus.consumer("t", group="g", start="earliest", ack="manual") as c:
            send(bus, "t", range(60))
            c.ack(c.poll_batch(60, timeout=1))
            for o in groups:
                assert len(drain(o)) == 60
            c.seek(0, 0)
            with bus.producer("t", timeout=2.0) as p:  # BusFull after 2 s if held
                for v in range(60, 400):
                    p.send(b"%d" % v)
                    for o in groups:
                        o.poll_batch(100, timeout=0)
    finally:
        for o in groups:
            o.close()
