"""The cost of watching a bus: what a running ``shmbus top`` and a Prometheus
scrape every second take from the bus's 64-byte throughput (issue 6: under 2 %).

One producer process (``send()`` per message) and one consumer process (a named
group, ``ack="auto"``, ``poll_batch(1000)``) move 64-byte messages through a
one-partition topic for a fixed time; the figure is the messages the consumer
received per second of that time.  Two conditions, interleaved A B A B over
``--reps`` repetitions so that the ratio holds on a noisy machine:

  A  nothing watches the bus;
  B  ``shmbus top BUS`` runs in a pseudo-terminal (its output read and thrown
     away), and ``shmbus export BUS`` runs with a scraper process fetching
     ``/metrics`` once per second.  Where ``shmbus top`` is not available (the
     command is not written yet) a stand-in runs instead: a process that calls
     ``Watcher.look()`` once per second and renders it as ``shmbus stat`` does,
     with rich, to /dev/null.  The output says which one ran.

The watchers start, and have looked at least once, before the measured time
begins.  Reported: median msgs/s per condition with its spread (min-max), the
ratio B/A of each repetition and their median, the CPU the watchers used during
B, and the cost of one look and one scrape measured directly (median of many,
on the bench topic with its group).

``--pin`` puts the producer and the consumer on a CPU each (the watchers go
where the scheduler puts them), which takes away the scheduler's placement
from the noise.

    python benchmarks/bench_monitor.py [--reps 5] [--seconds 3] [--quick] [--pin] [--json F]
"""
import argparse
import importlib.util
import json
import math
import multiprocessing as mp
import os
import pty
import statistics
import struct
import subprocess
import sys
import threading
import time
import urllib.request
import uuid

import psutil

import shmbus

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from machine import describe  # noqa: E402
from children import reap  # noqa: E402

SIZE = 64
BATCH = 1000
CAPACITY = 16 * 2**20
U64 = struct.Struct("<Q")


# -- the bus's work ----------------------------------------------------------------

def pin(cpu):
    """Keep this process on one CPU (None: leave it to the scheduler)."""
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {cpu})


def producer(bus_name, go, stop, results, cpu=None):
    """``send()`` 64-byte messages from ``go`` until ``stop``."""
    pin(cpu)
    body = bytes(SIZE - 8)
    n = 0
    with shmbus.Bus(bus_name) as bus, bus.producer("t", timeout=0.2) as p:
        go.wait(60)
        while not stop.is_set():
            for _ in range(1000):
                try:
                    p.send(U64.pack(n) + body)
                except shmbus.BusFull:
                    break
                n += 1
    results.put(("producer", n))


def consumer(bus_name, seconds, ready, go, results, cpu=None):
    """Receives for ``seconds`` after ``go``; reports messages per second."""
    pin(cpu)
    n = 0
    with shmbus.Bus(bus_name) as bus, bus.consumer("t", group="g", ack="auto",
                                                   start="earliest") as c:
        ready.set()
        go.wait(60)
        t0 = time.monotonic()
        end = t0 + seconds
        while True:
            now = time.monotonic()
            if now >= end:
                break
            n += len(c.poll_batch(BATCH, timeout=0.05))
        results.put(("consumer", n / (now - t0)))


# -- the watchers -------------------------------------------------------------------

def top_available() -> bool:
    return importlib.util.find_spec("shmbus._cli.top") is not None


def top_stand_in(bus_name, ready, stop):
    """What ``shmbus top`` does once a second, without a terminal: look, render."""
    from rich.console import Console

    from shmbus._cli.report import Watcher
    from shmbus._cli.stat import show

    w = Watcher([bus_name])
    with open(os.devnull, "w") as null:
        console = Console(file=null, force_terminal=True, width=120, height=40)
        while True:
            show(console, w.look())
            ready.set()
            if stop.wait(1.0):
                break
    w.close()


def scraper(port, ready, stop, results):
    """GET /metrics once a second; reports (scrapes, failures)."""
    ok = failed = 0
    url = f"http://127.0.0.1:{port}/metrics"
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                r.read()
            ok += 1
            ready.set()
        except OSError:
            failed += 1
        if stop.wait(1.0):
            break
    results.put(("scraper", (ok, failed)))


def child_env():
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Watchers:
    """``shmbus top`` (or its stand-in) and ``shmbus export`` with a scraper."""

    def __init__(self, ctx, bus_name, results):
        self.ctx, self.results = ctx, results
        self.stop = ctx.Event()
        self.procs = []  # psutil handles, for their CPU time
        self.children = []
        self.port = free_port()
        self.export = subprocess.Popen(
            [sys.executable, "-m", "shmbus", "export", bus_name, "--port", str(self.port)],
            env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.top_ready = ctx.Event()
        self.top = self.master = None
        if top_available():
            self.master, slave = pty.openpty()
            os.set_blocking(self.master, True)
            env = dict(child_env(), TERM="xterm-256color", COLUMNS="120", LINES="40")
            self.top = subprocess.Popen([sys.executable, "-m", "shmbus", "top", bus_name],
                                        env=env, stdin=slave, stdout=slave, stderr=slave,
                                        start_new_session=True)
            os.close(slave)
            self.drain = threading.Thread(target=self._drain, daemon=True)
            self.drain.start()
            self.procs.append(psutil.Process(self.top.pid))
        else:
            p = ctx.Process(target=top_stand_in, args=(bus_name, self.top_ready, self.stop))
            p.start()
            self.children.append(p)
            self.procs.append(psutil.Process(p.pid))
        self.procs.append(psutil.Process(self.export.pid))
        self.scrape_ready = ctx.Event()
        s = ctx.Process(target=scraper, args=(self.port, self.scrape_ready, self.stop, results))
        s.start()
        self.children.append(s)
        self.procs.append(psutil.Process(s.pid))

    def _drain(self):
        got = 0
        while True:
            try:
                b = os.read(self.master, 65536)
            except OSError:
                return
            if not b:
                return
            got += len(b)
            if got > 2000:
                self.top_ready.set()

    def wait_ready(self, timeout=30.0):
        for ev, what in ((self.top_ready, "top"), (self.scrape_ready, "the scraper")):
            if not ev.wait(timeout):
                raise RuntimeError(f"{what} did not start")

    def cpu(self) -> float:
        total = 0.0
        for p in self.procs:
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.Error:
                pass
        return total

    def close(self):
        if self.stop.is_set():
            return
        self.stop.set()
        if self.top is not None:
            try:
                os.write(self.master, b"q")
            except OSError:
                pass
            try:
                self.top.wait(5)
            except subprocess.TimeoutExpired:
                self.top.kill()
                self.top.wait(5)
            os.close(self.master)
        self.export.terminate()
        try:
            self.export.wait(10)
        except subprocess.TimeoutExpired:
            self.export.kill()
            self.export.wait(5)
        for c in self.children:
            c.join(10)
            if c.is_alive():
                c.kill()
                c.join(5)


# -- one run --------------------------------------------------------------------------

def cpus_for(pinned: bool):
    """(producer's CPU, consumer's CPU): two different ones, or None, None."""
    if not pinned or not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2:
        return None, None
    a, b = sorted(os.sched_getaffinity(0))[:2]
    return a, b


def run(watched: bool, seconds: float, ctx, pinned: bool = False):
    """msgs/s of one run, and the watchers' CPU seconds during it (None under A)."""
    name = f"bench-mon-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    bus = shmbus.Bus(name)
    procs, watchers = [], None
    try:
        bus.create_topic("t", capacity=CAPACITY, max_message_size=SIZE)
        results = ctx.Queue()
        go, stop, ready = ctx.Event(), ctx.Event(), ctx.Event()
        pcpu, ccpu = cpus_for(pinned)
        c = ctx.Process(target=consumer, args=(name, seconds, ready, go, results, ccpu))
        c.start()
        procs.append(c)
        if not ready.wait(60):
            raise RuntimeError("the consumer did not start")
        p = ctx.Process(target=producer, args=(name, go, stop, results, pcpu))
        p.start()
        procs.append(p)
        if watched:
            watchers = Watchers(ctx, name, results)
            watchers.wait_ready()
        time.sleep(0.5)  # start-up of the children is over
        cpu0 = watchers.cpu() if watchers else None
        go.set()
        got = {}
        while "consumer" not in got:
            k, v = results.get(timeout=seconds + 60)
            got[k] = v
        cpu = watchers.cpu() - cpu0 if watchers else None
        stop.set()
        if watchers:
            watchers.close()
        while "producer" not in got or (watchers and "scraper" not in got):
            k, v = results.get(timeout=60)
            got[k] = v
        if watchers and got["scraper"][0] < seconds - 1:
            raise RuntimeError(f"the scraper got only {got['scraper'][0]} scrapes")
        return got["consumer"], cpu, got.get("scraper")
    finally:
        if watchers:
            watchers.close()
        reap(procs, 10)
        bus.unlink()
        bus.close()


# -- the cost of one look and one scrape, directly ------------------------------------

def per_look(ctx, n_look: int, n_scrape: int):
    """Median seconds of one ``Watcher.look()`` and one HTTP scrape of the bench
    topic (with its group and a live member), the bus otherwise idle."""
    from shmbus._cli.report import Watcher

    name = f"bench-mon-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    bus = shmbus.Bus(name)
    export = None
    try:
        bus.create_topic("t", capacity=CAPACITY, max_message_size=SIZE)
        with bus.producer("t") as p, bus.consumer("t", group="g", start="earliest") as c:
            p.send_many([bytes(SIZE)] * 1000)
            c.poll_batch(500, timeout=1)
            w = Watcher([name])
            w.look()
            looks = []
            for _ in range(n_look):
                t0 = time.perf_counter()
                w.look()
                looks.append(time.perf_counter() - t0)
            from rich.console import Console

            from shmbus._cli.stat import show
            renders = []
            with open(os.devnull, "w") as null:
                console = Console(file=null, force_terminal=True, width=120, height=40)
                report = w.look()
                for _ in range(max(10, n_look // 10)):
                    t0 = time.perf_counter()
                    show(console, report)
                    renders.append(time.perf_counter() - t0)
            w.close()
            port = free_port()
            export = subprocess.Popen(
                [sys.executable, "-m", "shmbus", "export", name, "--port", str(port)],
                env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            url = f"http://127.0.0.1:{port}/metrics"
            deadline = time.monotonic() + 30
            while True:
                try:
                    with urllib.request.urlopen(url, timeout=5) as r:
                        size = len(r.read())
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError("the exporter did not answer") from None
                    time.sleep(0.1)
            scrapes = []
            for _ in range(n_scrape):
                t0 = time.perf_counter()
                with urllib.request.urlopen(url, timeout=5) as r:
                    r.read()
                scrapes.append(time.perf_counter() - t0)
            cpu = psutil.Process(export.pid).cpu_times()
        return {"look_s": statistics.median(looks), "scrape_s": statistics.median(scrapes),
                "render_s": statistics.median(renders), "renders": len(renders),
                "scrape_bytes": size, "looks": n_look, "scrapes": n_scrape,
                "exporter_cpu_s": cpu.user + cpu.system}
    finally:
        if export is not None:
            export.terminate()
            try:
                export.wait(10)
            except subprocess.TimeoutExpired:
                export.kill()
        bus.unlink()
        bus.close()


T975 = {1: 12.71, 2: 4.30, 3: 3.18, 4: 2.78, 5: 2.57, 6: 2.45, 7: 2.36, 8: 2.31, 9: 2.26,
        10: 2.23, 12: 2.18, 15: 2.13, 20: 2.09, 30: 2.04}


def ratio_interval(ratios):
    """Geometric mean of the ratios and its 95 % interval (t on their logs)."""
    logs = [math.log(x) for x in ratios]
    m = statistics.mean(logs)
    if len(logs) < 2:
        return math.exp(m), None, None
    df = len(logs) - 1
    t = T975[max(k for k in T975 if k <= df)] if df <= 30 else 1.96
    half = t * statistics.stdev(logs) / math.sqrt(len(logs))
    return math.exp(m), math.exp(m - half), math.exp(m + half)


def summary(values):
    med = statistics.median(values)
    return {"median": med, "min": min(values), "max": max(values),
            "spread_pct": (max(values) - min(values)) / med * 100, "runs": values}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=3.0, help="measured time of one run")
    ap.add_argument("--quick", action="store_true", help="3 repetitions of 1.5 s (under 60 s)")
    ap.add_argument("--pin", action="store_true",
                    help="producer and consumer each on a CPU of its own (the watchers float)")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)
    reps, seconds = (3, 1.5) if args.quick else (args.reps, args.seconds)

    from rich.console import Console
    from rich.table import Table

    console = Console()
    ctx = mp.get_context("spawn")
    top = "shmbus top (in a pty)" if top_available() else \
        "stand-in for shmbus top (Watcher.look() + rich render to /dev/null, 1/s)"
    console.print(f"B runs: {top}; shmbus export + a scraper of /metrics, 1/s", highlight=False)
    a, b, ratios, cpus = [], [], [], []
    for r in range(reps):
        ra, _, _ = run(False, seconds, ctx, args.pin)
        rb, cpu, scrapes = run(True, seconds, ctx, args.pin)
        a.append(ra)
        b.append(rb)
        ratios.append(rb / ra)
        cpus.append(cpu / seconds)
        console.print(f"rep {r + 1}/{reps}  A {ra / 1e6:.3f} M/s  B {rb / 1e6:.3f} M/s  "
                      f"B/A {rb / ra:.3f}  watchers' CPU {cpu / seconds:.1%} of a core "
                      f"({scrapes[0]} scrapes)", highlight=False)
    direct = per_look(ctx, 50 if args.quick else 300, 20 if args.quick else 100)
    sa, sb, sr = summary(a), summary(b), summary(ratios)
    table = Table(title=f"cost of monitoring: 1 producer (send) + 1 consumer (group, auto, "
                        f"poll_batch({BATCH})), {SIZE} B, {reps} x {seconds:g} s, A B interleaved"
                        + (", pinned" if args.pin else ""))
    for col in ("condition", "msgs/s (median)", "min - max", "spread"):
        table.add_column(col, justify="left" if col == "condition" else "right")
    for label, s in (("A: nothing watching", sa), ("B: top + export scraped 1/s", sb)):
        table.add_row(label, f"{s['median'] / 1e6:.3f} M", f"{s['min'] / 1e6:.3f} - "
                      f"{s['max'] / 1e6:.3f} M", f"{s['spread_pct']:.0f}%")
    console.print(table)
    console.print(f"B/A per pair: {', '.join(f'{x:.3f}' for x in ratios)}; median {sr['median']:.3f} "
                  f"(min {sr['min']:.3f}, max {sr['max']:.3f}): throughput under B "
                  f"{(sr['median'] - 1) * 100:+.1f} % (negative: a cost)", highlight=False)
    gm, lo, hi = ratio_interval(ratios)
    if lo is not None:
        console.print(f"B/A geometric mean {gm:.3f}, 95 % interval {lo:.3f} - {hi:.3f} "
                      "(what these runs can resolve)", highlight=False)
    console.print(f"watchers' CPU during B (top or stand-in + exporter + scraper; psutil, "
                  f"10 ms ticks): median {statistics.median(cpus):.2%} of one core",
                  highlight=False)
    console.print(f"one Watcher.look() of the bench topic: {direct['look_s'] * 1e3:.3f} ms "
                  f"(median of {direct['looks']}); rendering it as shmbus stat does: "
                  f"{direct['render_s'] * 1e3:.2f} ms (median of {direct['renders']}); "
                  f"one scrape of /metrics: "
                  f"{direct['scrape_s'] * 1e3:.2f} ms (median of {direct['scrapes']}, "
                  f"{direct['scrape_bytes']:,} bytes)", highlight=False)
    machine = describe(("shmbus", "cffi", "prometheus_client", "rich"))
    try:
        machine["load average (1, 5, 15 min)"] = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        pass
    console.print(", ".join(f"{k}: {v}" for k, v in machine.items()), highlight=False)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine, "top": top, "pinned": args.pin, "seconds": seconds, "reps": reps,
                       "A": sa, "B": sb, "ratio_b_over_a": sr,
                       "ratio_geometric_mean_95": [gm, lo, hi],
                       "watchers_cpu_share_of_core": cpus, "direct": direct}, f, indent=2)


if __name__ == "__main__":
    main()
