"""Groups and acknowledgement within one process: the contract's fine points and
bad input.  Cross-process behaviour is in test_groups.py."""
import time

import pytest

import shmbus

pytestmark = pytest.mark.timeout(60)


def send(bus, topic, values, **kw):
    with bus.producer(topic) as p:
        for v in values:
            p.send(v, **kw)


def take(c, n, timeout=2.0):
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        out += c.poll_batch(n - len(out), timeout=0.1)
    return out


def group_stats(bus, topic, name):
    return next(g for g in bus.stats(topic)["groups"] if g["name"] == name)


@pytest.fixture
def topic(bus):
    bus.create_topic("t", capacity=2**16)
    return "t"


def test_members_of_a_group_share_and_groups_fan_out(bus, topic):
    with bus.consumer(topic, group="a", ordering="none") as a1, \
            bus.consumer(topic, group="a", ordering="none") as a2, \
            bus.consumer(topic, group="b") as b:
        send(bus, topic, [b"%d" % i for i in range(10)])
        got_a = take(a1, 4) + take(a2, 6)
        assert sorted(int(m.value) for m in got_a) == list(range(10))
        assert [int(m.value) for m in take(b, 10)] == list(range(10))


def test_manual_ack_commits_and_lag_reaches_zero(bus, topic):
    with bus.consumer(topic, group="g", ack="manual") as c:
        send(bus, topic, [b"x"] * 5)
        msgs = take(c, 5)
        assert c.lag() == 5
        c.ack(msgs[1:])  # the first is still pending: nothing is committed
        assert c.lag() == 5
        c.ack(msgs[0])
        assert c.lag() == 0
        g = group_stats(bus, topic, "g")
        assert (g["delivered"], g["acked"], g["pending"], g["live_members"]) == (5, 5, 0, 1)


def test_ack_twice_is_a_no_op(bus, topic):
    with bus.consumer(topic, group="g", ack="manual") as c:
        send(bus, topic, [b"x", b"y"])
        m, m2 = take(c, 2)
        c.ack(m)
        c.ack(m)
        c.ack([m, m])
        assert group_stats(bus, topic, "g")["acked"] == 1
        c.ack(m2)
        assert c.lag() == 0


def test_ack_of_another_consumers_message_is_refused_and_harmless(bus, topic):
    with bus.consumer(topic, group="g", ack="manual", ordering="none") as c1, \
            bus.consumer(topic, group="h", ack="manual") as other_group, \
            bus.consumer(topic, group="g", ack="manual", ordering="none") as c2:
        send(bus, topic, [b"x"])
        m = take(c1, 1)[0]
        take(other_group, 1)
        with pytest.raises(shmbus.AckError):
            c2.ack(m)
        with pytest.raises(shmbus.AckError):
            other_group.ack([m])
        with pytest.raises(shmbus.AckError):
            c2.nack(m)
        assert isinstance(shmbus.AckError("x"), ValueError)
        assert group_stats(bus, topic, "g")["pending"] == 1
        c1.ack(m)
        assert c1.lag() == 0


def test_bad_arguments(bus, topic):
    with pytest.raises(shmbus.ConfigError):
        bus.consumer(topic, group="g", ack="sometimes")
    with pytest.raises(shmbus.ConfigError):
        bus.consumer(topic, group="g", ordering="random")
    with pytest.raises(shmbus.ConfigError):
        bus.consumer(topic, group="g", start="middle")
    with pytest.raises(TypeError):
        bus.consumer(topic, group="g", ack=1)
    with pytest.raises(shmbus.ConfigError):
        bus.consumer(topic, group="g", max_deliveries=3)  # needs manual acks
    with pytest.raises(shmbus.ConfigError):
        bus.consumer(topic, group="g", ack="manual", max_deliveries=0)
    with pytest.raises(shmbus.ConfigError):
        bus.consumer(topic, group="g", ack="manual", max_deliveries=shmbus_max() + 1)
    with pytest.raises(shmbus.ConfigError):
        bus.consumer(topic, group="g", ack="manual", ack_timeout=-1)
    with pytest.raises(shmbus.ConfigError):
        bus.consumer(topic, group="g", ack="manual", dead_letter=topic)
    with pytest.raises(shmbus.InvalidNameError):
        bus.consumer(topic, group="g", ack="manual", dead_letter="bad name")
    with pytest.raises(shmbus.InvalidNameError):
        bus.consumer(topic, group="bad/name")
    with bus.consumer(topic, group="g", ack="manual") as c:
        send(bus, topic, [b"x"])
        m = take(c, 1)[0]
        with pytest.raises(TypeError):
            c.ack("not a message")
        with pytest.raises(TypeError):
            c.ack(42)
        with pytest.raises(shmbus.ConfigError):
            c.nack(m, delay=-1)
        c.ack(m)  # nothing was lost by the bad calls
        assert c.lag() == 0
    assert [g["name"] for g in bus.stats(topic)["groups"]] == ["g"]


def shmbus_max():
    return shmbus._native.lib.SHMBUS_MAX_DELIVERIES


def test_nack_in_auto_mode_is_refused(bus, topic):
    with bus.consumer(topic, group="g") as c:
        send(bus, topic, [b"x"])
        m = c.poll(timeout=1)
        with pytest.raises(shmbus.AckError):
            c.nack(m)
        c.ack(m)  # a no-op under auto


def test_joining_with_another_config_is_refused(bus, topic):
    with bus.consumer(topic, group="g", ack="manual", ordering="none") as c:
        for kw in ({"ack": "auto", "ordering": "none"}, {"ack": "manual"},
                   {"ack": "manual", "ordering": "none", "max_deliveries": 2}):
            with pytest.raises(shmbus.ConfigMismatchError):
                bus.consumer(topic, group="g", **kw)
        # ack_timeout and dead_letter are each member's own
        bus.consumer(topic, group="g", ack="manual", ordering="none", ack_timeout=1.0).close()
        send(bus, topic, [b"x"])
        c.ack(take(c, 1))
        assert c.lag() == 0


def test_nack_redelivers_with_a_higher_count_after_the_delay(bus, topic):
    with bus.consumer(topic, group="g", ack="manual") as c:
        send(bus, topic, [b"x"])
        m = c.poll(timeout=1)
        assert m.delivery_count == 1
        t0 = time.monotonic()
        c.nack(m, delay=0.3)
        again = c.poll(timeout=3)
        assert time.monotonic() - t0 >= 0.29
        assert again.value == b"x" and again.delivery_count == 2 and again.offset == m.offset
        c.nack(again)
        third = c.poll(timeout=1)
        assert third.delivery_count == 3
        c.ack(third)
        g = group_stats(bus, topic, "g")
        assert (g["redelivered"], g["acked"], c.lag()) == (2, 1, 0)


def test_nack_under_partition_ordering_holds_later_messages_back(bus, topic):
    with bus.consumer(topic, group="g", ack="manual", ordering="partition") as c:
        send(bus, topic, [b"a"])
        a = c.poll(timeout=1)
        c.nack(a, delay=0.3)
        send(bus, topic, [b"b"])
        first = c.poll(timeout=3)
        assert first.value == b"a"  # b waited for a
        assert c.poll(timeout=0.2) is None  # and waits until a is done
        c.ack(first)
        b = c.poll(timeout=1)
        assert b.value == b"b"
        c.ack(b)


def test_nack_under_no_ordering_lets_the_others_flow(bus, topic):
    with bus.consumer(topic, group="g", ack="manual", ordering="none") as c:
        send(bus, topic, [b"a"])
        a = c.poll(timeout=1)
        c.nack(a, delay=0.5)
        send(bus, topic, [b"b"])
        assert c.poll(timeout=0.3).value == b"b"


def test_ack_timeout_redelivers(bus, topic):
    with bus.consumer(topic, ack="manual", ack_timeout=0.2) as c:  # a private group
        send(bus, topic, [b"x"])
        m = c.poll(timeout=1)
        again = c.poll(timeout=3)
        assert again.offset == m.offset and again.delivery_count == 2
        c.ack(m)  # too late: it is another delivery's now; nothing happens
        c.ack(again)
        assert c.lag() == 0


def test_close_makes_unacked_messages_redeliverable(bus, topic):
    c1 = bus.consumer(topic, group="g", ack="manual", ordering="none")
    with bus.consumer(topic, group="g", ack="manual", ordering="none") as c2:
        send(bus, topic, [b"x", b"y"])
        held = take(c1, 2)
        assert c2.poll(timeout=0.1) is None
        c1.ack(held[0])
        c1.close()
        m = c2.poll(timeout=2)
        assert m.value == b"y" and m.delivery_count == 2
        c2.ack(m)
        assert c2.poll(timeout=0.1) is None and c2.lag() == 0


def test_manual_view_stays_valid_until_ack(bus, topic):
    with bus.consumer(topic, group="g", ack="manual") as c:
        send(bus, topic, [b"first", b"second"])
        m = c.poll(timeout=1)
        c.poll(timeout=1)  # a later poll does not release a manual message
        assert bytes(m.view()) == b"first"
        c.ack(m)
        with pytest.raises(shmbus.MessageReleasedError):
            m.view()


def test_max_deliveries_without_dead_letter_topic_drops_and_counts(bus, topic):
    with bus.consumer(topic, group="g", ack="manual", max_deliveries=2) as c:
        send(bus, topic, [b"poison", b"ok"])
        for _ in range(2):
            m = c.poll(timeout=1)
            assert m.value == b"poison"
            c.nack(m)
        ok = c.poll(timeout=1)
        assert ok.value == b"ok"
        c.ack(ok)
        g = group_stats(bus, topic, "g")
        assert (g["dead_lettered"], g["acked"], g["lag"]) == (1, 1, 0)


def test_dead_letter_keeps_key_and_headers(bus, topic):
    with bus.consumer(topic, group="g", ack="manual", max_deliveries=1, dead_letter="dead") as c:
        send(bus, topic, [b"bad"], key=b"k", headers={"type": "order"})
        c.nack(c.poll(timeout=1), error="boom")
        assert c.poll(timeout=0.3) is None
    with bus.consumer("dead", start="earliest") as d:
        m = d.poll(timeout=1)
        assert (m.value, m.key) == (b"bad", b"k")
        h = m.headers
        assert h["type"] == "order" and h["shmbus.error"] == "boom"
        assert h["shmbus.reason"] == "nack" and h["shmbus.delivery_count"] == "1"
    info = bus.topic_info("dead")
    assert (info["on_full"], info["retention"]) == ("drop_oldest", "log")  # never stalls
    with bus.consumer("dead", group="inspectors", start="earliest") as d:  # a group reads it
        assert d.poll(timeout=1).value == b"bad"


def test_named_group_persists_and_a_new_group_starts_as_asked(bus, topic):
    send(bus, topic, [b"old"])
    with bus.consumer(topic, group="early", start="earliest") as c:
        assert c.poll(timeout=1).value == b"old"
    with bus.consumer(topic, group="late", start="latest") as c:
        assert c.poll(timeout=0.1) is None
    send(bus, topic, [b"new"])
    assert sorted(g["name"] for g in bus.stats(topic)["groups"]) == ["early", "late"]
    with bus.consumer(topic, group="early", start="earliest") as c:  # resumes, start ignored
        assert c.poll(timeout=1).value == b"new"


def test_partition_ordering_gives_each_partition_to_one_member(bus):
    bus.create_topic("p", partitions=4, capacity=2**16)
    with bus.consumer("p", group="g") as a, bus.consumer("p", group="g") as b:
        with bus.producer("p") as p:
            for i in range(40):
                p.send(b"%d" % i, key=b"%d" % i)
        deadline = time.monotonic() + 5
        got = {id(a): [], id(b): []}
        while sum(map(len, got.values())) < 40 and time.monotonic() < deadline:
            for c in (a, b):
                got[id(c)] += c.poll_batch(100, timeout=0.02)
        parts_a = {m.partition for m in got[id(a)]}
        parts_b = {m.partition for m in got[id(b)]}
        assert parts_a and parts_b and not parts_a & parts_b
        owners = [p["owner"] for p in group_stats(bus, "p", "g")["partitions"]]
        assert None not in owners and len(set(owners)) == 2


def test_closing_gives_back_fetched_messages_never_handed_out(bus, topic):
    with bus.consumer(topic, group="g", ordering="none") as c2:
        c1 = bus.consumer(topic, group="g", ordering="none")
        send(bus, topic, [b"%d" % i for i in range(10)])
        first = int(c1.poll(timeout=1).value)  # fetches all ten, hands out one
        assert c2.poll(timeout=0.1) is None
        c1.close()
        rest = take(c2, 9)
        assert sorted(int(m.value) for m in rest) == [i for i in range(10) if i != first]
        assert all(m.delivery_count == 1 for m in rest)
        assert c2.poll(timeout=0.1) is None
        g = group_stats(bus, topic, "g")
        assert g["redelivered"] == 0
    assert group_stats(bus, topic, "g")["lag"] == 0


def test_delete_group(bus, topic):
    with bus.consumer(topic, group="g", ack="manual") as c:
        send(bus, topic, [b"x"])
        c.poll(timeout=1)
        with pytest.raises(shmbus.ShmbusError):
            bus.delete_group(topic, "g")  # it has a live member
    with pytest.raises(shmbus.GroupNotFoundError):
        bus.delete_group(topic, "nope")
    with pytest.raises(shmbus.InvalidNameError):
        bus.delete_group(topic, "bad name")
    bus.delete_group(topic, "g")
    assert bus.stats(topic)["groups"] == []
    with pytest.raises(shmbus.GroupNotFoundError):
        bus.delete_group(topic, "g")
    with bus.consumer(topic, group="g", ack="auto", start="earliest") as c:  # a new group
        # with no group left, what no group consumed is kept for the first to come
        m = c.poll(timeout=1)
        assert (m.value, m.delivery_count) == (b"x", 1)


@pytest.mark.parametrize("ack", ["auto", "manual"])
@pytest.mark.parametrize("case", ["drop_oldest", "untethered"])
def test_a_group_the_producer_laps_learns_what_it_lost(bus, ack, case):
    """A named group on a drop_oldest topic, or an untethered named group beside a
    private reader that keeps up: the producer never waits for it."""
    untethered = case == "untethered"
    bus.create_topic("d", capacity=2**12, on_full="block" if untethered else "drop_oldest")
    keeper = bus.consumer("d") if untethered else None
    with bus.consumer("d", group="g", ack=ack, ordering="none", tethered=not untethered) as c:
        send(bus, "d", [b"%05d" % i for i in range(10)])
        held = take(c, 10)
        with bus.producer("d", timeout=0.5) as p:  # many laps; never waits for the group
            for i in range(10, 3000):
                p.send(b"%05d" % i)
                if keeper is not None:
                    keeper.poll_batch(100, timeout=0)
        c.ack(held)  # gone meanwhile: a no-op, never an error
        got, lost = [], 0
        while True:
            msgs = c.poll_batch(500, timeout=0.2)
            if not msgs:
                break
            for m in msgs:
                lost += m.lost_before
                got.append(int(m.value))
            c.ack(msgs)
        assert got == sorted(got) and got[-1] == 2999
        assert len(got) + lost == 2990 and lost > 0
        c.poll(timeout=0)
        g = group_stats(bus, "d", "g")
        assert g["lost"] == lost and g["lag"] == 0 and g["pending"] == 0
    if keeper is not None:
        keeper.close()


def test_dead_letter_at_once_with_the_error_type_and_text(bus, topic):
    with bus.consumer(topic, group="g", ack="manual", max_deliveries=5, dead_letter="dead") as c:
        send(bus, topic, [b"poison", b"fine"], headers={"type": "order"})
        m = c.poll(timeout=1)
        c.dead_letter(m, error=ValueError("no such product"))  # first delivery, 5 allowed
        c.dead_letter(m)                                      # twice: nothing more
        ok = c.poll(timeout=1)
        assert ok.value == b"fine"
        c.ack(ok)
        assert c.poll(timeout=0.3) is None                    # not delivered again
        g = group_stats(bus, topic, "g")
        assert (g["dead_lettered"], g["acked"], g["lag"]) == (1, 1, 0)
    with bus.consumer("dead", start="earliest") as d:
        m = d.poll(timeout=1)
        h = m.headers
        assert m.value == b"poison" and h["type"] == "order"
        assert h["shmbus.reason"] == "rejected" and h["shmbus.delivery_count"] == "1"
        assert h["shmbus.error"] == "ValueError: no such product" and h["shmbus.error_type"] == "ValueError"
        assert d.poll(timeout=0.3) is None


def test_nack_with_an_exception_names_its_type_in_the_dead_letter(bus, topic):
    class Flaky(ConnectionError):
        pass

    with bus.consumer(topic, group="g", ack="manual", max_deliveries=1, dead_letter="dead") as c:
        send(bus, topic, [b"x"])
        c.nack(c.poll(timeout=1), error=Flaky("reset by peer"))
        assert c.poll(timeout=0.3) is None  # passes the dead letter on
    with bus.consumer("dead", start="earliest") as d:
        h = d.poll(timeout=1).headers
        assert h["shmbus.error"] == "Flaky: reset by peer" and h["shmbus.reason"] == "nack"
        assert h["shmbus.error_type"].endswith("Flaky")


def test_dead_letter_needs_manual_acks_and_its_own_message(bus, topic):
    send(bus, topic, [b"a"])
    with bus.consumer(topic, group="auto", start="earliest") as auto:
        m = auto.poll(timeout=1)
        with pytest.raises(shmbus.AckError):
            auto.dead_letter(m)
        with bus.consumer(topic, group="other", ack="manual", start="earliest") as other:
            with pytest.raises(shmbus.AckError):
                other.dead_letter(m)
            with pytest.raises(TypeError):
                other.dead_letter("not a message")
    with pytest.raises(shmbus.ClosedError):
        auto.dead_letter(m)
