"""Stream processing: per-user spending in 10-second tumbling windows of event
time, and a real-time alert on any single purchase over 900.

A producer process publishes purchases stamped with their event time, a few of
them out of order and a few very late (a phone that was offline).  The stream
raises an alert at once for a high-value purchase (it does not wait for any
window), aggregates the rest into windows that close when the watermark (the
highest event time seen, minus 2 s of allowed disorder) passes their end plus
1 s of lateness, writes each window's total to the topic ``totals``, and sends
the purchases that came too late to ``late``.

    python -m shmbus.examples.alerts
"""
import json
import multiprocessing as mp
import os
import random

import shmbus

START = 1_700_000_000.0  # event time of the first purchase (seconds since the epoch)


def purchases(seed: int = 7, n: int = 600):
    """(user, amount, event_time): one a 0.1 s apart, some out of order, some very late."""
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        t = START + i * 0.1
        if rnd.random() < 0.05:
            t -= rnd.uniform(0.5, 1.5)   # out of order, within the allowed disorder
        if rnd.random() < 0.01:
            t -= 15.0                    # very late: its window has closed
        amount = rnd.choice([rnd.randint(1, 80)] * 50 + [rnd.randint(901, 2000)])
        out.append((f"user-{rnd.randint(0, 4)}", amount, t))
    return out


def shop(bus_name: str) -> None:
    with shmbus.Bus(bus_name) as bus, bus.producer("purchases") as p:
        for user, amount, t in purchases():
            p.send(json.dumps({"user": user, "amount": amount, "t": t}).encode(), key=user)


def main() -> None:
    bus = shmbus.Bus(f"alerts-{os.getpid()}")
    try:
        for topic in ("purchases", "totals", "late", "alerts"):
            bus.create_topic(topic)
        child = mp.get_context("spawn").Process(target=shop, args=(bus.name,))
        with bus.consumer("purchases", start="earliest") as c, bus.producer("totals") as totals, \
                bus.producer("late") as late, bus.producer("alerts") as alerts:
            child.start()
            raised = []

            def alert(m) -> None:
                e = json.loads(m.value)
                if e["amount"] > 900:
                    alerts.send(m.value, key=e["user"])
                    raised.append(e)

            decode = lambda m: json.loads(m.value)  # noqa: E731
            stream = shmbus.WindowedStream(
                c, shmbus.Windows(10.0, delay=2.0, lateness=1.0), totals,
                event_time=lambda m: decode(m)["t"], key=lambda m: decode(m)["user"],
                value=lambda m: decode(m)["amount"], late_output=late, on_message=alert)
            stream.run(seconds=30, idle=1.0)
            child.join(10)
        print(f"{len(raised)} alerts raised as the purchases came, for example "
              f"{raised[0]['user']} spent {raised[0]['amount']}" if raised else "no alerts")
        print(f"{stream.emitted} window totals written to 'totals'; "
              f"{stream.windows.late} late purchases sent to 'late'")
        with bus.consumer("totals", start="earliest") as t:
            for m in t.poll_batch(5, timeout=1.0):
                w = json.loads(m.value)
                print(f"  {w['key']} [{w['start'] - START:4.0f} s, {w['end'] - START:4.0f} s): "
                      f"{w['value']} in {w['count']} purchases")
    finally:
        bus.unlink()
        bus.close()


if __name__ == "__main__":
    main()
