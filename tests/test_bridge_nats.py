"""The NATS JetStream bridge against a real nats-server (JetStream on): 10,000
messages out and back in with keys and headers intact and order kept per key;
the bridge SIGKILLed and restarted (nothing lost, and no duplicate in the stream:
JetStream's id window drops the resends); the server restarted; backpressure."""
import asyncio
import os
import signal
import time
import uuid

import pytest

import shmbus
from _servers import NatsServer, started
from _bridge_checks import drain, in_key_order

nats = pytest.importorskip("nats", reason="nats-py is not installed: pip install -e '.[test]'")
from shmbus.bridge import NatsBridge  # noqa: E402

pytestmark = pytest.mark.timeout(120)
W = "_bridge_workers:"
N = 10_000


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = started(NatsServer, str(tmp_path_factory.mktemp("nats")))
    yield s
    s.stop()


def subject():
    return f"orders.{uuid.uuid4().hex[:8]}"


def stream_count(server, subj):
    """Messages the stream capturing ``subj`` holds."""
    async def count():
        nc = await nats.connect(server.url)
        try:
            js = nc.jetstream()
            name = await js.find_stream_name_by_subject(subj)
            return (await js.stream_info(name)).state.messages
        finally:
            await nc.close()
    return asyncio.run(count())


def test_ten_thousand_messages_out_and_back_in(bus, remote, server, procs):
    bus.create_topic("orders", partitions=2, capacity=4 << 20)
    remote.create_topic("orders", capacity=4 << 20)
    url = f"{server.url}/{subject()}"
    with NatsBridge(bus, "orders", url, "out") as out, NatsBridge(remote, "orders", url, "in") as in_:
        procs.start("p", W + "produce", bus_name=bus.name, topic="orders", n=N)
        assert procs.result("p") == N
        got = drain(remote, "orders", N)
        end = time.monotonic() + 10
        while in_.stats.forwarded < N and time.monotonic() < end:
            time.sleep(0.01)
        assert out.stats.forwarded == N and in_.stats.forwarded == N
    assert len(got) == N and len({v for _, v, _ in got}) == N and in_key_order(got)
    key, value, headers = got[0]
    assert value.startswith(key + b":") and headers["raw"] == b"\x00\x01" and "n" in headers


def test_a_bridge_killed_and_restarted_leaves_no_duplicate_in_the_stream(bus, server, procs):
    bus.create_topic("orders", capacity=4 << 20)
    subj = subject()
    url = f"{server.url}/{subj}"
    procs.start("p", W + "produce", bus_name=bus.name, topic="orders", n=N)
    assert procs.result("p") == N
    first = procs.start("b1", W + "run_nats_bridge", bus_name=bus.name, topic="orders", url=url,
                        direction="out", seconds=60)
    end = time.monotonic() + 30
    while time.monotonic() < end:
        try:
            if stream_count(server, subj) >= N // 3:
                break
        except nats.js.errors.NotFoundError:
            pass
        time.sleep(0.05)
    os.kill(first.pid, signal.SIGKILL)
    procs.join("b1")
    assert stream_count(server, subj) < N
    procs.start("b2", W + "run_nats_bridge", bus_name=bus.name, topic="orders", url=url,
                direction="out", seconds=4)
    procs.result("b2")
    assert stream_count(server, subj) == N  # the resent batch fell in the id window


def test_the_bridge_reconnects_when_the_server_comes_back(bus, server):
    bus.create_topic("orders", capacity=4 << 20)
    subj = subject()
    with NatsBridge(bus, "orders", f"{server.url}/{subj}", "out") as b, bus.producer("orders") as p:
        p.send_many([b"before-%d" % i for i in range(100)])
        end = time.monotonic() + 20
        while b.stats.forwarded < 100 and time.monotonic() < end:
            time.sleep(0.02)
        server.stop()
        p.send_many([b"during-%d" % i for i in range(100)])
        end = time.monotonic() + 10
        while b.stats.connected and time.monotonic() < end:
            time.sleep(0.02)
        assert not b.stats.connected and b.stats.last_error
        server.start()
        end = time.monotonic() + 30
        while b.stats.forwarded < 200 and time.monotonic() < end:
            time.sleep(0.05)
        assert b.stats.forwarded == 200 and b.stats.reconnects >= 1
    assert stream_count(server, subj) == 200


def test_bad_urls_are_refused(bus):
    bus.create_topic("t")
    for url in ("redis://x:1/s", "nats://127.0.0.1:1", "nats://127.0.0.1:1/a/b"):
        with pytest.raises(shmbus.ConfigError):
            NatsBridge(bus, "t", url)


def test_the_two_hosts_example_runs_through_both(server, tmp_path):
    import subprocess
    import sys
    from _servers import RedisServer
    redis_server = started(RedisServer, str(tmp_path))
    try:
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        r = subprocess.run([sys.executable, "-m", "shmbus.examples.two_hosts", "--redis",
                            redis_server.url, "--nats", server.url, "--orders", "500"],
                           capture_output=True, text=True, timeout=60,
                           env=dict(os.environ, PYTHONPATH=root))
    finally:
        redis_server.stop()
    assert r.returncode == 0, r.stderr
    assert "Redis Streams: 500 of 500 orders" in r.stdout
    assert "NATS JetStream: 500 of 500 orders" in r.stdout


def test_a_full_local_topic_pauses_the_inbound_bridge(bus, server):
    bus.create_topic("in", capacity=4096, max_messages=16)
    subj = subject()

    async def fill():
        nc = await nats.connect(server.url)
        js = nc.jetstream()
        await js.add_stream(name=subj.replace(".", "_"), subjects=[subj])
        for i in range(600):
            await js.publish(subj, b"x%d" % i)
        await nc.close()
    asyncio.run(fill())
    with bus.consumer("in", group="slow", ack="manual", start="earliest") as slow:
        with NatsBridge(bus, "in", f"{server.url}/{subj}", "in") as b:
            time.sleep(1.0)
            assert b.stats.paused and b.stats.forwarded == 0  # acked by whole fetches
            got = 0
            end = time.monotonic() + 30
            while got < 600 and time.monotonic() < end:
                batch = slow.poll_batch(16, timeout=0.2)
                slow.ack(batch)
                got += len(batch)
            assert got == 600


def publish(server, subj, values):
    async def go():
        nc = await nats.connect(server.url)
        js = nc.jetstream()
        await js.add_stream(name=subj.replace(".", "_"), subjects=[subj])
        for start in range(0, len(values), 256):
            await asyncio.gather(*(js.publish(subj, v) for v in values[start:start + 256]))
        await nc.close()
    asyncio.run(go())


def test_an_inbound_bridge_killed_and_restarted_loses_nothing(bus, server, procs):
    bus.create_topic("in", capacity=8 << 20)
    subj = subject()
    publish(server, subj, [b"%d" % i for i in range(N)])
    url = f"{server.url}/{subj}"
    with bus.consumer("in", group="check", start="earliest") as c:
        first = procs.start("b1", W + "run_nats_bridge", bus_name=bus.name, topic="in", url=url,
                            direction="in", seconds=60, ack_wait=2.0)
        got = []
        end = time.monotonic() + 30
        while len(got) < N // 3 and time.monotonic() < end:
            got += [m.value for m in c.poll_batch(1000, timeout=0.1)]
        os.kill(first.pid, signal.SIGKILL)
        procs.join("b1")
        procs.start("b2", W + "run_nats_bridge", bus_name=bus.name, topic="in", url=url,
                    direction="in", seconds=60, ack_wait=2.0)
        end = time.monotonic() + 60
        while len(set(got)) < N and time.monotonic() < end:  # what b1 fetched comes again
            got += [m.value for m in c.poll_batch(1000, timeout=0.1)]
    assert len(set(got)) == N  # nothing lost
    assert len(got) - N <= 256  # at most the fetch in flight, again (at least once)


def test_an_inbound_bridge_reconnects_when_the_server_comes_back(bus, server):
    bus.create_topic("in", capacity=4 << 20)
    subj = subject()
    publish(server, subj, [b"before"])
    with bus.consumer("in", group="check", start="earliest") as c, \
            NatsBridge(bus, "in", f"{server.url}/{subj}", "in") as b:
        got = c.poll_batch(10, timeout=10)
        server.stop()
        end = time.monotonic() + 10
        while b.stats.connected and time.monotonic() < end:
            time.sleep(0.02)
        assert not b.stats.connected
        server.start()

        async def after():
            nc = await nats.connect(server.url)
            await nc.jetstream().publish(subj, b"after")
            await nc.close()
        asyncio.run(after())
        end = time.monotonic() + 30
        while len(got) < 2 and time.monotonic() < end:
            got += c.poll_batch(10, timeout=0.2)
        assert [m.value for m in got] == [b"before", b"after"] and b.stats.reconnects >= 1
