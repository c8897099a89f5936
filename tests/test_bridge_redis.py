"""The Redis Streams bridge against a real redis-server on loopback: 10,000
messages out and back in with keys and headers intact and order kept per key;
the bridge SIGKILLed and restarted (nothing lost); the server stopped and
started again (the bridge reconnects and says so); a full local topic pauses
the inbound bridge."""
import os
import signal
import time
import uuid

import pytest

import shmbus
from _bridge_checks import drain, in_key_order
from _servers import RedisServer, started

redis = pytest.importorskip("redis", reason="redis-py is not installed: pip install -e '.[test]'")
from shmbus.bridge import RedisBridge  # noqa: E402

pytestmark = pytest.mark.timeout(120)
W = "_bridge_workers:"
N = 10_000


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = started(RedisServer, str(tmp_path_factory.mktemp("redis")))
    yield s
    s.stop()


def stream_url(server):
    return f"{server.url}/s-{uuid.uuid4().hex[:8]}"


def test_ten_thousand_messages_out_and_back_in(bus, remote, server, procs):
    bus.create_topic("orders", partitions=2, capacity=4 << 20)
    remote.create_topic("orders", capacity=4 << 20)
    url = stream_url(server)
    with RedisBridge(bus, "orders", url, "out") as out, RedisBridge(remote, "orders", url, "in") as in_:
        procs.start("p", W + "produce", bus_name=bus.name, topic="orders", n=N)
        assert procs.result("p") == N
        got = drain(remote, "orders", N)
        end = time.monotonic() + 10  # the last one is counted once Redis has its XACK
        while in_.stats.forwarded < N and time.monotonic() < end:
            time.sleep(0.01)
        assert out.stats.forwarded == N and in_.stats.forwarded == N
    assert len(got) == N and len({v for _, v, _ in got}) == N
    assert in_key_order(got)
    key, value, headers = got[0]
    assert value.startswith(key + b":") and headers["raw"] == b"\x00\x01" and "n" in headers
    client = redis.Redis.from_url(server.url)
    assert client.xlen(url.rsplit("/", 1)[1]) == N
    fields = client.xrange(url.rsplit("/", 1)[1], count=1)[0][1]
    assert fields[b"o"].startswith(f"{bus.name}/orders/".encode()) and int(fields[b"ts"]) > 0


def test_a_bridge_killed_mid_stream_and_restarted_loses_nothing(bus, server, procs):
    bus.create_topic("orders", capacity=4 << 20)
    url = stream_url(server)
    stream = url.rsplit("/", 1)[1]
    client = redis.Redis.from_url(server.url)
    procs.start("p", W + "produce", bus_name=bus.name, topic="orders", n=N)
    assert procs.result("p") == N
    first = procs.start("b1", W + "run_bridge", bus_name=bus.name, topic="orders", url=url,
                        direction="out", seconds=60)
    end = time.monotonic() + 30
    while client.xlen(stream) < N // 3 and time.monotonic() < end:
        time.sleep(0.01)
    os.kill(first.pid, signal.SIGKILL)
    procs.join("b1")
    assert client.xlen(stream) < N  # killed mid-stream
    procs.start("b2", W + "run_bridge", bus_name=bus.name, topic="orders", url=url,
                direction="out", seconds=3)
    procs.result("b2")
    values = [f[b"v"] for _, f in client.xrange(stream)]
    assert len(set(values)) == N  # nothing lost
    assert len(values) - N <= 256  # at most the batch in flight, again (at least once)


def test_the_bridge_reconnects_when_the_server_comes_back(bus, server):
    bus.create_topic("orders", capacity=4 << 20)
    url = stream_url(server)
    with RedisBridge(bus, "orders", url, "out") as b, bus.producer("orders") as p:
        p.send_many([b"before-%d" % i for i in range(100)])
        end = time.monotonic() + 20
        while b.stats.forwarded < 100 and time.monotonic() < end:
            time.sleep(0.02)
        server.stop()
        p.send_many([b"during-%d" % i for i in range(100)])
        end = time.monotonic() + 10
        while b.stats.connected and time.monotonic() < end:
            time.sleep(0.02)
        assert not b.stats.connected and "Error" in (b.stats.last_error or "")
        server.start()
        end = time.monotonic() + 30
        while b.stats.forwarded < 200 and time.monotonic() < end:
            time.sleep(0.05)
        assert b.stats.forwarded == 200 and b.stats.reconnects >= 1 and b.stats.connected
    values = {f[b"v"] for _, f in redis.Redis.from_url(server.url).xrange(url.rsplit("/", 1)[1])}
    assert len(values) == 200


def test_a_full_local_topic_pauses_the_inbound_bridge(bus, server):
    bus.create_topic("in", capacity=4096, max_messages=16)
    url = stream_url(server)
    stream = url.rsplit("/", 1)[1]
    client = redis.Redis.from_url(server.url)
    for i in range(1000):
        client.xadd(stream, {"v": b"x%d" % i})
    with bus.consumer("in", group="slow", ack="manual", start="earliest") as slow:
        with RedisBridge(bus, "in", url, "in") as b:
            time.sleep(1.0)
            assert b.stats.paused and b.stats.forwarded == 0  # acked by whole reads
            pending = client.xpending(stream, f"shmbus:{bus.name}/in")["pending"]
            assert pending <= 256  # what one read took, no more
            got = 0  # the consumer takes what comes: the bridge goes on
            end = time.monotonic() + 20
            while got < 300 and time.monotonic() < end:
                batch = slow.poll_batch(16, timeout=0.2)
                slow.ack(batch)
                got += len(batch)
            assert got >= 300
            end = time.monotonic() + 10
            while b.stats.forwarded < 256 and time.monotonic() < end:  # a whole read, acked
                time.sleep(0.02)
            assert b.stats.forwarded >= 256


def test_bad_urls_are_refused(bus):
    bus.create_topic("t")
    for url in ("http://x/s", "redis://127.0.0.1:1", "redis:///s"):
        with pytest.raises(shmbus.ConfigError):
            RedisBridge(bus, "t", url)
    with pytest.raises(shmbus.ConfigError):
        RedisBridge(bus, "t", "redis://127.0.0.1:1/s", "sideways")


def test_the_bridge_command_forwards_a_topic(bus, server):
    import subprocess
    import sys
    bus.create_topic("orders")
    with bus.producer("orders") as p:
        p.send_many([b"m%d" % i for i in range(50)])
    url = stream_url(server)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    r = subprocess.run([sys.executable, "-m", "shmbus", "bridge", "out", f"{bus.name}/orders", url,
                        "--seconds", "1.5", "--every", "0.5"], capture_output=True, text=True,
                       timeout=30, env=dict(os.environ, PYTHONPATH=root))
    assert r.returncode == 0, r.stderr
    assert "50 forwarded, connected" in r.stderr
    assert redis.Redis.from_url(server.url).xlen(url.rsplit("/", 1)[1]) == 50
    r = subprocess.run([sys.executable, "-m", "shmbus", "bridge", "out", f"{bus.name}/orders",
                        "http://nowhere/x"], capture_output=True, text=True, timeout=30,
                       env=dict(os.environ, PYTHONPATH=root))
    assert r.returncode == 2 and "redis://HOST:PORT/STREAM" in r.stderr


def test_stat_shows_the_bridges_of_a_bus(bus, server):
    import json
    import subprocess
    import sys
    bus.create_topic("orders")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root)
    with RedisBridge(bus, "orders", stream_url(server), "out") as b, bus.producer("orders") as p:
        p.send_many([b"x"] * 10)
        end = time.monotonic() + 10
        while b.stats.forwarded < 10 and time.monotonic() < end:
            time.sleep(0.02)
        time.sleep(1.2)  # a report a second
        r = subprocess.run([sys.executable, "-m", "shmbus", "stat", bus.name, "--json"],
                           capture_output=True, text=True, timeout=30, env=env)
        assert r.returncode == 0, r.stderr
        report = json.loads(r.stdout)["buses"][bus.name]
        assert "shmbus.bridges" not in report["topics"]
        (bridge,) = report["bridges"]
        assert (bridge["direction"], bridge["topic"], bridge["forwarded"], bridge["connected"],
                bridge["running"]) == ("out", "orders", 10, True, True)
        assert bridge["remote"].startswith(server.url)
        r = subprocess.run([sys.executable, "-m", "shmbus", "stat", bus.name], capture_output=True,
                           text=True, timeout=30, env=env)
        assert "10 forwarded, connected" in " ".join(r.stdout.split())  # rich wraps lines
    r = subprocess.run([sys.executable, "-m", "shmbus", "stat", bus.name, "--json"],
                       capture_output=True, text=True, timeout=30, env=env)
    (bridge,) = json.loads(r.stdout)["buses"][bus.name]["bridges"]
    assert not bridge["running"]  # its last report, at the stop


def test_an_inbound_bridge_killed_and_restarted_loses_nothing(bus, server, procs):
    bus.create_topic("in", capacity=8 << 20)
    url = stream_url(server)
    stream = url.rsplit("/", 1)[1]
    client = redis.Redis.from_url(server.url)
    pipe = client.pipeline(transaction=False)
    for i in range(N):
        pipe.xadd(stream, {"v": b"%d" % i})
    pipe.execute()
    with bus.consumer("in", group="check", start="earliest") as c:
        first = procs.start("b1", W + "run_bridge", bus_name=bus.name, topic="in", url=url,
                            direction="in", seconds=60)
        got = []
        end = time.monotonic() + 30
        while len(got) < N // 3 and time.monotonic() < end:
            got += [m.value for m in c.poll_batch(1000, timeout=0.1)]
        os.kill(first.pid, signal.SIGKILL)
        procs.join("b1")
        procs.start("b2", W + "run_bridge", bus_name=bus.name, topic="in", url=url,
                    direction="in", seconds=60)
        end = time.monotonic() + 60
        while len(set(got)) < N and time.monotonic() < end:
            got += [m.value for m in c.poll_batch(1000, timeout=0.1)]
    assert len(set(got)) == N  # nothing lost
    assert len(got) - N <= 256  # at most the read in flight, again (at least once)


def test_an_inbound_bridge_reconnects_when_the_server_comes_back(bus, server):
    bus.create_topic("in", capacity=4 << 20)
    url = stream_url(server)
    stream = url.rsplit("/", 1)[1]
    with bus.consumer("in", group="check", start="earliest") as c, \
            RedisBridge(bus, "in", url, "in") as b:
        redis.Redis.from_url(server.url).xadd(stream, {"v": b"before"})
        got = c.poll_batch(10, timeout=10)
        server.stop()
        end = time.monotonic() + 10
        while b.stats.connected and time.monotonic() < end:
            time.sleep(0.02)
        assert not b.stats.connected
        server.start()
        redis.Redis.from_url(server.url).xadd(stream, {"v": b"after"})
        end = time.monotonic() + 30
        while len(got) < 2 and time.monotonic() < end:
            got += c.poll_batch(10, timeout=0.2)
        assert [m.value for m in got] == [b"before", b"after"] and b.stats.reconnects >= 1
