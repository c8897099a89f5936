"""``shmbus demo``: producer processes, a worker group, subscriber processes, live
figures.

Producers publish keyed, numbered messages to the topic ``events``.  The workers
share one group (``workers``, manual acks): each message goes to one of them.
Every subscriber (a private group each) receives every message and checks the
order per producer.  Workers and subscribers report their figures on a second
topic, ``figures``, which this process reads to draw the live table: the demo uses
the bus to watch itself.
"""
import multiprocessing as mp
import os
import struct
import time
from typing import Dict, List

from ._bus import Bus

RECORD = struct.Struct("<IQq")  # producer id, sequence, send time (ns)
FIGURES = struct.Struct("<IQQQQ")  # subscriber id, received, out of order, latency sum (ns), done


def _produce(bus_name: str, ident: int, seconds: float, start: float) -> None:
    with Bus(bus_name) as bus, bus.producer("events") as p:
        while time.time() < start:
            time.sleep(0.001)
        key = f"producer-{ident}"
        pad = b"." * 40
        seq = 0
        end = start + seconds
        clock = time.time_ns
        while True:
            for _ in range(256):
                p.send(RECORD.pack(ident, seq, clock()) + pad, key=key)
                seq += 1
            if time.time() >= end:
                break


def _subscribe(bus_name: str, ident: int, producers: int, ready, group=None) -> None:
    """A subscriber (group None) or a member of the worker group (acks by batch)."""
    with Bus(bus_name) as bus, bus.producer("figures") as report, \
            bus.consumer("events", group=group, start="latest", ordering="none",
                         ack="manual" if group else "auto") as c:
        ready.set()
        expected = [0] * producers
        received = disorder = latency = 0
        last = time.monotonic()
        idle_since = None
        while True:
            msgs = c.poll_batch(4096, timeout=0.1)
            now_ns = time.time_ns()
            for m in msgs:
                pid, seq, sent = RECORD.unpack_from(m.view())
                if seq != expected[pid] and not group:
                    disorder += 1
                expected[pid] = seq + 1
                latency += now_ns - sent
            if group and msgs:
                c.ack(msgs)
            received += len(msgs)
            idle_since = None if msgs else (idle_since or time.monotonic())
            # done: something came, then a second of silence (the producers stopped)
            done = received > 0 and idle_since is not None and time.monotonic() - idle_since > 1.0
            if done or time.monotonic() - last > 0.2:
                report.send(FIGURES.pack(ident, received, disorder, latency, int(done)))
                last = time.monotonic()
            if done:
                return


WORKERS = 100  # figures ident of the first worker


def run(producers: int = 2, subscribers: int = 2, workers: int = 2, seconds: float = 5.0) -> int:
    """Run the demo; returns the process exit status (0: every subscriber got every
    message, in order, and the workers got every message once between them)."""
    from rich.console import Console
    from rich.live import Live
    from rich.table import Table

    console = Console()
    name = f"demo-{os.getpid()}"
    ctx = mp.get_context("spawn")
    bus = Bus(name)
    procs: List[mp.process.BaseProcess] = []
    try:
        bus.create_topic("events", partitions=2, capacity=2 * 2**20)
        bus.create_topic("figures", capacity=2**20, on_full="drop_newest")
        watch = bus.consumer("figures", start="earliest")
        idents = list(range(subscribers)) + [WORKERS + i for i in range(workers)]
        readies = [ctx.Event() for _ in idents]
        subs = [ctx.Process(target=_subscribe, daemon=True,
                            args=(name, ident, producers, ready,
                                  "workers" if ident >= WORKERS else None))
                for ident, ready in zip(idents, readies)]
        for p in subs:
            p.start()
        for r in readies:
            if not r.wait(30):
                raise RuntimeError("a subscriber did not start")
        start = time.time() + 0.2
        prods = [ctx.Process(target=_produce, args=(name, i, seconds, start), daemon=True)
                 for i in range(producers)]
        for p in prods:
            p.start()
        procs = subs + prods
        figures: Dict[int, tuple] = {}
        history: List[tuple] = []

        def table() -> Table:
            published = sum(p["published"] for p in bus.stats("events")["partitions"])
            now = time.monotonic()
            history.append((now, published))
            while len(history) > 2 and now - history[0][0] > 1.0:
                history.pop(0)
            (t0, n0), (t1, n1) = history[0], history[-1]
            rate = (n1 - n0) / (t1 - t0) if t1 > t0 else 0.0
            t = Table(title=f"shmbus demo: bus {name!r}, {producers} producers -> "
                            f"{workers} workers sharing one group, and {subscribers} "
                            "subscribers that each get every message")
            for col in ("", "messages", "out of order", "mean latency", "state"):
                t.add_column(col, justify="right")
            t.add_row("published", f"{published:,}", "", "", f"{rate / 1e3:,.0f} k msgs/s")
            for ident in idents:
                _, got, bad, lat, done = figures.get(ident, (ident, 0, 0, 0, 0))
                label = f"worker {ident - WORKERS}" if ident >= WORKERS else f"subscriber {ident}"
                t.add_row(label, f"{got:,}", "-" if ident >= WORKERS else str(bad),
                          f"{lat / got / 1e3:,.1f} µs" if got else "-",
                          "done" if done else "reading")
            return t

        with Live(table(), console=console, refresh_per_second=4) as live:
            deadline = time.monotonic() + seconds + 30
            while time.monotonic() < deadline:
                for m in watch.poll_batch(1000, timeout=0.25):
                    f = FIGURES.unpack(m.value)
                    figures[f[0]] = f
                live.update(table())
                if all(not p.is_alive() for p in procs):
                    break
            for m in watch.poll_batch(1000, timeout=0.1):
                f = FIGURES.unpack(m.value)
                figures[f[0]] = f
            live.update(table())
        if not console.is_terminal:
            console.line()  # the last frame of the live table ends without one
        stats = bus.stats("events")
        published = sum(p["published"] for p in stats["partitions"])
        group = next(g for g in stats["groups"] if g["name"] == "workers")
        watch.close()
        subs_ok = all(figures.get(i, (0, -1, 1))[1:3] == (published, 0) for i in range(subscribers))
        shared = sum(figures.get(WORKERS + i, (0, 0))[1] for i in range(workers))
        workers_ok = shared == published == group["acked"] and group["lag"] == 0
        if subs_ok and workers_ok:
            console.print(f"[green]every subscriber received all {published:,} messages, in "
                          f"order per producer; the {workers} workers shared them, each message "
                          "once[/green]")
        else:
            console.print("[red]a subscriber missed messages or saw them out of order, or the "
                          "workers did not get every message once[/red]")
        return 0 if subs_ok and workers_ok else 1
    except KeyboardInterrupt:
        console.print("interrupted")
        return 130
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
        for p in procs:
            p.join(5)
        bus.unlink()
        bus.close()
