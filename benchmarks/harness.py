"""Running one workload with one peer: spawning the children, ready/go, the
deadline, collecting and verifying their results; and the interleaved plan
(repetition r runs every peer once in turn: A B C A B C ...).

A run either gives a figure or a failure with its reason, never both: the
deliveries must equal ``w.expected``, with no corrupt, reordered or duplicated
message and the sum of the stamps as sent.
"""
import multiprocessing as mp
import queue
import statistics
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Dict, List, Optional, Tuple

import peers
import workloads
from children import reap
from workloads import Workload

START_WAIT = 15.0   # seconds the children have to start and connect
STOP_GRACE = 3.0    # seconds receivers have to report what they got once stopped
# a receiver's w.timeout: how long one recv() waits before the loop looks whether
# to stop (deadline passed, or competing consumers done) and waits again
RECV_TIMEOUT = 0.1


@dataclass
class Outcome:
    """One run: ``rate`` (deliveries/s, or round trips/s for ping) or ``failure``."""
    rate: Optional[float] = None
    failure: Optional[str] = None
    lat_ns: List[int] = field(default_factory=list)


# -- in a child ---------------------------------------------------------------------

def _child(role: str, ref: str, channels: Tuple[Any, ...], w: Workload, index: int,
           ready: Any, go: Any, stop: Any, delivered: Any, results: Any) -> None:
    """One child process: connect, say ready, wait for go, run its loop, report."""
    ends: List[Any] = []
    wr = replace(w, timeout=RECV_TIMEOUT)
    try:
        peer = peers.load(ref)
        if role == "send":
            ends = [peer.sender(channels[0], w, index)]
        elif role == "recv":
            ends = [peer.receiver(channels[0], wr, index)]
        elif role == "ping":  # sends on the first channel, hears back on the second;
            # the receiver first: the other end's sender may wait for it to connect
            rcv = peer.receiver(channels[1], wr, 0)
            ends = [peer.sender(channels[0], w, 0), rcv]
        else:
            rcv = peer.receiver(channels[0], wr, 0)
            ends = [peer.sender(channels[1], w, 0), rcv]
        ready.set()
        if not go.wait(START_WAIT + 10):
            return
        if role == "send":
            out = workloads.send_loop(ends[0], w, index)
        elif role == "recv":
            out = workloads.receive_loop(ends[0], w, stop, delivered)
        elif role == "ping":
            out = workloads.ping_loop(ends[0], ends[1], w, stop)
        else:
            out = workloads.pong_loop(ends[0], ends[1], w, stop)
    except Exception as e:  # noqa: BLE001 - the parent reports it as the failure
        out = {"error": f"{role} {index}: {type(e).__name__}: {e}"}
    results.put((role, index, out))
    for end in ends:
        try:
            end.close()
        except Exception:  # noqa: BLE001 - the run is over; the parent cleans up
            pass


# -- in the parent ------------------------------------------------------------------

class _Run:
    """The children of one run and what they reported."""

    def __init__(self, ref: str, channels: Tuple[Any, ...], w: Workload, allowed: float):
        self.allowed = allowed
        self.ctx = mp.get_context("spawn")
        self.ref, self.channels, self.w = ref, channels, w
        self.go, self.stop = self.ctx.Event(), self.ctx.Event()
        self.delivered = self.ctx.Value("q", 0)
        self.results = self.ctx.Queue()
        self.procs: Dict[Tuple[str, int], Any] = {}
        self.out: Dict[Tuple[str, int], Dict[str, Any]] = {}

    def start(self, roles: List[Tuple[str, int]]) -> Optional[str]:
        """Start these children and wait until each is ready; a failure or None."""
        readies = []
        for role, i in roles:
            ready = self.ctx.Event()
            p = self.ctx.Process(target=_child, daemon=True, args=(
                role, self.ref, self.channels, self.w, i, ready, self.go, self.stop,
                self.delivered, self.results))
            p.start()
            self.procs[(role, i)] = p
            readies.append(((role, i), ready))
        deadline = time.monotonic() + START_WAIT
        for key, ready in readies:
            while not ready.wait(0.05):
                p = self.procs[key]
                if p.exitcode is not None or time.monotonic() > deadline:
                    self._drain(0.5)
                    err = self._error()
                    return err or (f"{key[0]} {key[1]} did not start (exit code {p.exitcode})"
                                   if p.exitcode is not None else f"{key[0]} {key[1]} did not start")
        return None

    def collect(self, deadline: float) -> Optional[str]:
        """Release the children and gather every report until ``deadline``
        (monotonic); a failure or None."""
        self.go.set()
        while len(self.out) < len(self.procs):
            if time.monotonic() > deadline:
                self.stop.set()
                self._drain(STOP_GRACE)
                return self._error() or self._hung()
            self._drain(0.1)
            err = self._error()
            if err:
                return err
            for key, p in self.procs.items():
                if key not in self.out and p.exitcode is not None:
                    self._drain(0.5)  # its report may still be on the way
                    if key not in self.out:
                        return f"{key[0]} {key[1]} died (exit code {p.exitcode})"
        return None

    def _drain(self, wait: float) -> None:
        end = time.monotonic() + wait
        while True:
            try:
                role, i, out = self.results.get(timeout=max(0.0, end - time.monotonic()))
            except queue.Empty:
                return
            self.out[(role, i)] = out

    def _error(self) -> Optional[str]:
        errors = [o["error"] for o in self.out.values() if "error" in o]
        return errors[0] if errors else None

    def _hung(self) -> str:
        got = [o["got"] for (role, _), o in self.out.items() if role in ("recv", "ping")]
        if got:
            expected = self.w.count if self.w.kind == "ping" else self.w.expected
            if sum(got) >= expected:
                late = [f"{k[0]} {k[1]}" for k in self.procs if k not in self.out]
                return f"{', '.join(late)} did not report within {self.allowed:.0f} s"
            return f"lost messages or hung: {sum(got):,} of {expected:,} after {self.allowed:.0f} s"
        return f"hung (no report after {self.allowed:.0f} s)"

    def end(self, ok: bool) -> None:
        """Reap every child (SIGKILL for one that does not end) and the queue."""
        self.stop.set()
        reap(self.procs.values(), 5.0 if ok else 0.5)
        self.results.close()
        self.results.cancel_join_thread()


def run(peer: Any, w: Workload, seconds_allowed: float) -> Outcome:
    """One run of ``w`` with ``peer`` (an adapter module from ``peers.load``): open,
    start the receivers then the senders, go, collect, verify, close."""
    try:
        channels = (peer.open(w), peer.open(w)) if w.kind == "ping" else (peer.open(w),)
    except Exception as e:  # noqa: BLE001 - reported as the failure
        return Outcome(failure=f"open: {type(e).__name__}: {e}")
    r = _Run(peer.REF, channels, w, seconds_allowed)
    failure = None
    try:
        if w.kind == "ping":
            # together: each end's sender may wait for the other end's receiver
            failure = r.start([("pong", 0), ("ping", 0)])
        else:
            failure = (r.start([("recv", i) for i in range(w.consumers)])
                       or r.start([("send", i) for i in range(w.producers)]))
        if failure is None:
            failure = r.collect(time.monotonic() + seconds_allowed)
    finally:
        r.end(ok=failure is None)
        for ch in channels:
            try:
                peer.close(ch)
            except Exception as e:  # noqa: BLE001
                failure = failure or f"close: {type(e).__name__}: {e}"
    if failure:
        return Outcome(failure=failure)
    return _verify_ping(w, r.out[("ping", 0)]) if w.kind == "ping" else _verify(w, r.out)


def _verify(w: Workload, out: Dict[Tuple[str, int], Dict[str, Any]]) -> Outcome:
    tallies = [o for (role, _), o in out.items() if role == "recv"]
    got = sum(t["got"] for t in tallies)
    why = []
    if got < w.expected:
        why.append(f"lost {w.expected - got:,}")
    elif got > w.expected:
        why.append(f"duplicated {got - w.expected:,}")
    elif sum(t["seq_sum"] for t in tallies) & workloads.M64 != workloads.expected_sum(w):
        why.append("wrong messages (the stamps do not add up)")
    if any(t["out_of_order"] for t in tallies):
        why.append(f"reordered ({sum(t['out_of_order'] for t in tallies):,})")
    if any(t["bad"] for t in tallies):
        why.append(f"corrupt ({sum(t['bad'] for t in tallies):,})")
    if why:
        return Outcome(failure=", ".join(why))
    firsts = [t["t_first"] for t in tallies if t["t_first"] is not None]
    lasts = [t["t_last"] for t in tallies if t["t_first"] is not None]
    span = max(lasts) - min(firsts) if firsts else 0.0
    if span <= 0:
        return Outcome(failure="too few messages to time")
    return Outcome(rate=got / span)


def _verify_ping(w: Workload, out: Dict[str, Any]) -> Outcome:
    if out["got"] != w.count:
        return Outcome(failure=f"lost {w.count - out['got']:,} of {w.count:,} round trips")
    if out["bad"]:
        return Outcome(failure=f"corrupt ({out['bad']:,})")
    lat = out["lat_ns"]
    if not lat:
        return Outcome(failure="too few round trips to time")
    return Outcome(rate=len(lat) / (sum(lat) / 1e9), lat_ns=lat)


# -- how many messages --------------------------------------------------------------

class Pacer:
    """Chooses ``count`` so that a run lasts about ``seconds``: from the peer's
    ``RATE_HINT`` (messages/s at 64 B, 1 -> 1, or a function of the workload) at
    first, corrected by what each earlier run of the same peer and kind measured."""

    BANDWIDTH = 1e9        # bytes/s assumed where a hint says nothing about size
    KIND_SPEEDUP = {"batch": 2.0, "columnar": 20.0, "ping": 0.05}
    MAX_BYTES = 4 << 30    # bytes one producer sends in one run, at most
    MIN_COUNT = 20

    def __init__(self, seconds: float, scale: float = 1.0):
        self.seconds, self.scale = seconds, scale
        self.measured: Dict[Tuple[str, Workload], float] = {}
        self.factor: Dict[Tuple[str, str, bool], List[float]] = {}

    def count(self, peer: Any, w: Workload) -> int:
        rate = self.measured.get((peer.REF, w.with_count(0))) or self._guess(peer, w)
        sends = rate / (w.consumers if w.pattern == "each" else 1)
        n = int(sends * self.seconds / w.producers * self.scale)
        return max(self.MIN_COUNT, min(n, self.MAX_BYTES // w.size))

    def observe(self, peer: Any, w: Workload, rate: float) -> None:
        """What a run of ``w`` (with any count) measured."""
        self.measured[(peer.REF, w.with_count(0))] = rate
        self.factor.setdefault((peer.REF, w.kind, w.spin), []).append(rate / self._hint(peer, w))

    def _guess(self, peer: Any, w: Workload) -> float:
        seen = self.factor.get((peer.REF, w.kind, w.spin))
        return self._hint(peer, w) * (statistics.median(seen) if seen else 1.0)

    def _hint(self, peer: Any, w: Workload) -> float:
        hint = getattr(peer, "RATE_HINT", None) or 100_000
        if callable(hint):
            return float(hint(w))
        per_msg = 1 / hint + w.size / self.BANDWIDTH
        return self.KIND_SPEEDUP.get(w.kind, 1.0) / per_msg * (w.consumers if w.pattern == "each" else 1)


def interleaved(plan: List[Workload], refs: List[str], reps: int, pacer: Pacer,
                seconds_allowed: float, step: Callable[[str, int], None] = lambda text, done: None
                ) -> Tuple[Dict[Tuple[Workload, str], List[Outcome]], List[Dict[str, str]]]:
    """Every workload of ``plan``, ``reps`` times, every peer once per repetition in
    turn; ``step(text, done)`` is told of each run before (0) and after it (1).
    Returns the outcomes per (workload, peer ref) and the skips."""
    mods = {ref: peers.load(ref) for ref in refs}
    outcomes: Dict[Tuple[Workload, str], List[Outcome]] = {}
    skipped: List[Dict[str, str]] = []
    for w in plan:
        runnable = []
        for ref, mod in mods.items():
            why = mod.unsupported(w)
            if why:
                skipped.append({"peer": mod.NAME, "workload": w.name, "size": w.size, "reason": why})
                step(f"{w.name}: {mod.NAME} skipped", reps)
            else:
                runnable.append(ref)
                outcomes[(w, ref)] = []
        for _ in range(reps):
            for ref in runnable:
                mod = mods[ref]
                step(f"{w.name} {w.size} B: {mod.NAME}", 0)
                o = run(mod, w.with_count(pacer.count(mod, w)), seconds_allowed)
                step(f"{w.name} {w.size} B: {mod.NAME}", 1)
                if o.rate:
                    pacer.observe(mod, w, o.rate)
                outcomes[(w, ref)].append(o)
    return outcomes, skipped
