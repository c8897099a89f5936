"""asyncio: ``async for``, ``poll_async`` and ``send_async`` never block the event
loop (a timer in the same loop stays on schedule), do not busy-poll, and lose
nothing when cancelled."""
import asyncio
import os
import subprocess
import sys
import time

import pytest

import shmbus

pytestmark = pytest.mark.timeout(60)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PACED = """
import sys, time, shmbus
with shmbus.Bus(sys.argv[1]) as bus, bus.producer("t") as p:
    for i in range(int(sys.argv[2])):
        p.send(b"%d" % i)
        time.sleep(float(sys.argv[3]))
"""


def paced_sender(bus, count, interval):
    return subprocess.Popen([sys.executable, "-c", PACED, bus.name, str(count), str(interval)],
                            env=dict(os.environ, PYTHONPATH=ROOT))


async def ticker(period, until, lateness):
    """Sleep ``period`` again and again; record how late each wake-up is."""
    loop = asyncio.get_running_loop()
    while loop.time() < until:
        t = loop.time()
        await asyncio.sleep(period)
        lateness.append(loop.time() - t - period)


def test_a_consumer_in_the_loop_keeps_a_timer_on_schedule(bus):
    bus.create_topic("t", capacity=2**16)
    c = bus.consumer("t")
    sender = paced_sender(bus, 60, 0.02)

    async def main():
        lateness, got = [], []
        loop = asyncio.get_running_loop()
        tick = asyncio.ensure_future(ticker(0.02, loop.time() + 2.0, lateness))

        async def consume():
            async for msg in c:
                got.append(int(msg.value))
                if len(got) == 60:
                    return

        await asyncio.wait_for(consume(), 20)
        await tick
        return lateness, got

    try:
        lateness, got = asyncio.run(main())
    finally:
        sender.wait(20)
        c.close()
    assert got == list(range(60))
    lateness.sort()
    assert lateness[len(lateness) // 2] < 0.01 and lateness[-1] < 0.1, lateness[-5:]


def test_waiting_does_not_busy_poll(bus):
    bus.create_topic("t", capacity=2**16)
    c = bus.consumer("t")

    async def main():
        return await c.poll_async(1.0)

    cpu, t = time.process_time(), time.monotonic()
    assert asyncio.run(main()) is None
    cpu, t = time.process_time() - cpu, time.monotonic() - t
    c.close()
    assert 0.9 <= t < 3 and cpu < 0.3 * t, (cpu, t)


def test_a_cancelled_poll_loses_nothing(bus):
    bus.create_topic("t", capacity=2**16)
    c = bus.consumer("t", group="g", ack="manual", ordering="none", start="earliest")

    async def main():
        task = asyncio.ensure_future(c.poll_async(None))
        await asyncio.sleep(0.2)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        with bus.producer("t") as p:
            p.send(b"after the cancel")
        return await c.poll_async(5)

    m = asyncio.run(main())
    assert m.value == b"after the cancel" and m.delivery_count == 1
    c.ack(m)
    c.close()


def test_poll_async_times_out_and_checks_its_timeout(bus):
    bus.create_topic("t", capacity=2**16)
    c = bus.consumer("t")

    async def main():
        t = time.monotonic()
        assert await c.poll_async(0.3) is None
        assert await c.poll_async(0) is None
        with pytest.raises(shmbus.ConfigError):
            await c.poll_async(-1)
        return time.monotonic() - t

    assert 0.25 <= asyncio.run(main()) < 2
    c.close()


def full_topic(bus):
    bus.create_topic("t", capacity=4096, max_message_size=512, on_full="block")
    p = bus.producer("t")
    n = 0
    try:
        while True:
            p.send(b"%04d" % n + b"." * 400, timeout=0)
            n += 1
    except shmbus.BusFull:
        pass
    return p, n


def test_send_async_waits_for_room_without_blocking_the_loop(bus):
    p, n = full_topic(bus)
    c = bus.consumer("t", start="earliest")

    async def main():
        lateness = []
        loop = asyncio.get_running_loop()
        tick = asyncio.ensure_future(ticker(0.02, loop.time() + 0.6, lateness))
        send = asyncio.ensure_future(p.send_async(b"last" + b"." * 400, timeout=10))
        await asyncio.sleep(0.3)
        assert not send.done()                       # the ring is full
        got = [(await c.poll_async(5)).value[:4] for _ in range(n)]
        assert await c.poll_async(0) is None         # commits what it read: room again
        off = await asyncio.wait_for(send, 5)
        await tick
        return lateness, got, off

    lateness, got, off = asyncio.run(main())
    assert got == [b"%04d" % i for i in range(n)] and off.offset == n
    assert max(lateness) < 0.1
    assert c.poll(5).value[:4] == b"last"
    p.close()
    c.close()


def test_a_cancelled_send_async_sends_nothing_and_close_is_safe(bus):
    p, n = full_topic(bus)
    c = bus.consumer("t", start="earliest")

    async def main():
        send = asyncio.ensure_future(p.send_async(b"cancelled" + b"." * 400))
        await asyncio.sleep(0.2)
        send.cancel()
        with pytest.raises(asyncio.CancelledError):
            await send
        waiting = asyncio.ensure_future(p.send_async(b"closed" + b"." * 400))
        await asyncio.sleep(0.2)
        p.close()                                    # while a worker thread waits for room
        c.poll_batch(n, timeout=1)
        c.poll_batch(n, timeout=0)                   # commits them: room, the waiter wakes
        with pytest.raises(shmbus.ClosedError):
            await asyncio.wait_for(waiting, 5)
        with pytest.raises(shmbus.ClosedError):
            p.send(b"after close")

    asyncio.run(main())
    time.sleep(0.3)
    assert c.poll(0.3) is None                       # neither was sent
    assert p.closed
    c.close()
