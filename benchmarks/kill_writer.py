"""Side by side: SIGKILL a writer in the middle of a put, and see who carries on.

For each library, one reader process and two writer processes (spawn) share one
queue or topic.  Both writers put 1 KiB messages in a tight loop; each payload
carries its writer id, a sequence number and a CRC-32 of the whole.  After a random
0.15 to 0.5 s of hot writing, writer 0 (the victim) dies by SIGKILL.  Then, each
wait bounded by ``--timeout`` seconds:

  (a) does the surviving writer still put?  (2,048 more puts return: twice the
      queue's depth, so a queue that stopped draining cannot absorb them)
  (b) does the reader still get the survivor's new messages?  (2,048 of them)
  (c) did a torn or garbled message arrive (bad CRC, wrong length, duplicate or
      out-of-order sequence number)?
  and, once the writers are told to stop and the reader has drained: was a message
  whose put had returned (acknowledged) never delivered?

What "kill mid-put" means for each:

  mp.Queue     put() appends to a buffer in the process; a feeder thread pickles
               and writes it to a pipe while holding a lock shared by every writer.
               The victim is SIGKILLed at a random moment.  The kill landed in the
               critical section when the queue's write lock is found still taken
               after the survivor has stopped (probed with a timeout).
  faster-fifo  put() takes a process-shared pthread mutex (not robust), copies into
               a shared circular buffer and releases it.  The victim is SIGKILLed
               at a random moment.  Whether the kill landed inside the mutex cannot
               be observed from outside except by its effect (others block).
  shmbus       send() claims an offset and room, copies, commits, in C.  Three
               rows: a random-moment SIGKILL (the kill landed in the middle of a
               send when the topic's ``recovered_claims`` counter went up: exact),
               and the C core's fault points ``SHMBUS_FAULT=after_claim:kill`` and
               ``during_copy:kill``, armed in the victim after the same hot random
               delay (it sets the variable and opens a second producer, which
               loads it), so that its next send SIGKILLs itself between claim and
               commit: the kill lands there every time.

Depth is about 1,000 messages for every library: ``mp.Queue(maxsize=1024)``,
faster-fifo ``max_size_bytes=1 MiB``, a shmbus topic of 1 MiB (one partition).
Puts wait at most 1 s each (then count as refused and are retried); gets 0.2 s.
Every child is SIGKILLed at the end of each trial, hung or not, and /dev/shm is
listed before and after each library.  The script exits 0 when a peer hangs (that
is the finding), and 1 only if shmbus hangs, tears or loses an acknowledged message,
or a trial could not be set up.

    PYTHONPATH=. python benchmarks/kill_writer.py --trials 20

prints the machine, then a table like this one (numbers vary from run to run):

    library      kill                trials  carried on  writer stuck  reader stuck  torn  disorder  lost acked   first new max s  2048 new max s  kill landed in put
    mp.Queue     random moment           20           9            11            11     0         0  5241 in 8/9             0.07            0.23  11 (write lock left held)
    faster-fifo  random moment           20          12             8             8     0         0  0 in 0/12               0.19            0.26  8? (inferred from the hang)
    shmbus       random moment           20          20             0             0     0         0  0 in 0/20               0.21            0.21  0 (exact: recovered claims)
    shmbus       fault: after_claim      20          20             0             0     0         0  0 in 0/20               1.20            1.72  20 (exact: recovered claims)
    shmbus       fault: during_copy      20          20             0             0     0         0  0 in 0/20               1.28            1.52  20 (exact: recovered claims)

(drawn as a rich table), one line per library saying why, and what /dev/shm held
afterwards.  Expect shmbus to carry on in every trial with nothing torn or lost, the
first new message about 1 s (the liveness timeout) after a kill between claim and
commit; mp.Queue and faster-fifo to hang in a share of the trials (how many depends
on where the kill lands), and mp.Queue to lose what its victim had buffered when it
does not hang.  A random-moment kill seldom lands inside shmbus's claim-to-commit
window (most of a send is Python): the fault-point rows put it there every time.
``--quick`` runs 3 trials each (default 6, about 2 minutes on the 2-core machine); ``--stacks`` prints,
for a hang, where the stuck processes wait (gdb); ``--only LIB`` runs one library.
"""
import argparse
import ctypes
import gc
import multiprocessing as mp
import os
import queue
import random
import signal
import struct
import sys
import time
import traceback
import uuid
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from machine import describe  # noqa: E402

SIZE = 1024
DEPTH = 1024
RING_BYTES = 1 << 20
HEADER = struct.Struct("<IQI")  # writer id, sequence number, CRC-32 of the rest
CARRY_ON = 2 * DEPTH  # new survivor messages put and delivered: more than the queue absorbs
PUT_TIMEOUT = 1.0
GET_TIMEOUT = 0.2

# Slots of the shared array (one RawArray of int64 per trial).
ACKED = 0        # [2] last sequence number whose put returned, per writer
REFUSED = 2      # [2] puts that timed out (queue.Full / BusFull), per writer
RCOUNT = 4       # [2] messages received in order, per writer
RLAST = 6        # [2] last sequence number received, per writer
DISORDER = 8     # [2] gaps, duplicates or reordering seen, per writer
TORN = 10        # messages that failed the check (length, CRC, writer id)
BEAT = 11        # reader loop iterations (its calls return)
READY = 12       # [3] writer 0, writer 1, reader
GO = 15          # writers start
STOP = 16        # writers stop
DONE = 17        # [2] writer has stopped putting
ERROR = 19       # [3] a child raised
SLOTS = 22


def body_block(wid: int) -> bytes:
    return random.Random(wid).randbytes(4 * SIZE)


def make_payload(wid: int, seq: int, block: bytes) -> bytes:
    start = (seq * 7) % (3 * SIZE)
    body = block[start:start + SIZE - HEADER.size]
    crc = zlib.crc32(body, zlib.crc32(struct.pack("<IQ", wid, seq)))
    return HEADER.pack(wid, seq, crc) + body


def check_payload(v) -> tuple:
    """(writer id, seq) of a good message, or None if it is torn or garbled."""
    if len(v) != SIZE:
        return None
    wid, seq, crc = HEADER.unpack_from(v)
    if wid > 1 or zlib.crc32(bytes(v[HEADER.size:]), zlib.crc32(struct.pack("<IQ", wid, seq))) != crc:
        return None
    return wid, seq


# -- the three libraries, as seen by a child -------------------------------------

def _putter(lib, handle, fault=None):
    """A put(bytes) -> bool (False: refused after PUT_TIMEOUT) and a re-arm hook."""
    if lib == "shmbus":
        import shmbus
        bus = shmbus.Bus(handle)
        box = [bus.producer("t", timeout=PUT_TIMEOUT)]

        def put(b):
            try:
                box[0].send(b)
                return True
            except shmbus.BusFull:
                return False

        def arm():  # the C core reads SHMBUS_FAULT when a producer opens
            os.environ["SHMBUS_FAULT"] = fault
            box.append(bus.producer("t", timeout=PUT_TIMEOUT))
            box.pop(0)
        return put, arm
    q = handle
    full = queue.Full
    if lib == "faster-fifo":
        import faster_fifo
        full = faster_fifo.Full if hasattr(faster_fifo, "Full") else queue.Full

    def put(b):
        try:
            q.put(b, block=True, timeout=PUT_TIMEOUT)
            return True
        except (full, queue.Full):
            return False
    return put, None


def writer_main(lib, handle, arr, wid, fault, arm_after):
    try:
        put, arm = _putter(lib, handle, fault)
        block = body_block(wid)
        arr[READY + wid] = 1
        while not arr[GO]:
            time.sleep(0.001)
        arm_at = time.monotonic() + arm_after if fault else None
        seq = 0
        while not arr[STOP]:
            if arm_at is not None and time.monotonic() >= arm_at:
                arm()
                arm_at = None
            if put(make_payload(wid, seq, block)):
                arr[ACKED + wid] = seq
                seq += 1
            else:
                arr[REFUSED + wid] += 1
        arr[DONE + wid] = 1
    except BaseException:
        arr[ERROR + wid] = 1
        traceback.print_exc()
    while True:  # stay alive (an mp.Queue feeder thread may still be flushing) until killed
        time.sleep(1)


def reader_main(lib, handle, arr):
    try:
        if lib == "shmbus":
            import shmbus
            bus = shmbus.Bus(handle)
            c = bus.consumer("t", start="earliest")

            def get():
                m = c.poll(timeout=GET_TIMEOUT)
                return None if m is None else m.value
        else:
            import faster_fifo  # noqa: F401  (the queue unpickled; Empty classes below)
            empties = (queue.Empty,) + ((faster_fifo.Empty,) if lib == "faster-fifo" and hasattr(faster_fifo, "Empty") else ())
            q = handle

            def get():
                try:
                    return q.get(block=True, timeout=GET_TIMEOUT)
                except empties:
                    return None
        arr[READY + 2] = 1
        while True:
            v = get()
            arr[BEAT] += 1
            if v is None:
                continue
            ok = check_payload(v)
            if ok is None:
                arr[TORN] += 1
                continue
            wid, seq = ok
            last = arr[RLAST + wid]
            if seq == last + 1:
                arr[RCOUNT + wid] += 1
            elif seq > last + 1:  # a gap: earlier messages of this writer were lost
                arr[DISORDER + wid] += 1
                arr[RCOUNT + wid] += 1
            else:  # a duplicate or a message out of order
                arr[DISORDER + wid] += 1
                continue
            arr[RLAST + wid] = seq
    except BaseException:
        arr[ERROR + 2] = 1
        traceback.print_exc()
    while True:
        time.sleep(1)


# -- one trial -------------------------------------------------------------------

def wait_until(pred, timeout, step=0.01):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(step)
    return pred()


def stack_of(pid):
    """The innermost C frames of each thread of a stuck process, from gdb (bounded)."""
    import shutil
    import subprocess
    if not shutil.which("gdb"):
        return "(gdb not found)"
    try:
        out = subprocess.run(["gdb", "-p", str(pid), "-batch", "-ex", "thread apply all bt 8"],
                             capture_output=True, text=True, timeout=30).stdout
    except subprocess.TimeoutExpired:
        return "(gdb timed out)"
    threads, frames = [], []
    for line in out.splitlines():
        if line.startswith("Thread "):
            if frames:
                threads.append(" < ".join(frames))
            frames = []
        elif line.startswith("#") and len(frames) < 5:
            words = line.split()
            name = words[3] if len(words) > 3 and words[2] == "in" else words[1]
            if not name.startswith("_Py") and not name.startswith("0x"):
                frames.append(name)
    if frames:
        threads.append(" < ".join(frames))
    return " | ".join(threads) or "(no stack)"


def semaphore_names(q):
    names = []
    for lock in (q._rlock, q._wlock, q._sem):
        name = getattr(getattr(lock, "_semlock", None), "name", None)
        if name:
            names.append("sem." + name.lstrip("/"))
    return names


def run_trial(ctx, lib, kill, rng, args):
    """One trial; returns a dict of what was seen."""
    arr = ctx.RawArray(ctypes.c_int64, SLOTS)
    for w in (0, 1):
        arr[ACKED + w] = arr[RLAST + w] = -1
    bus = q = None
    owned = []  # /dev/shm names this trial's objects own
    if lib == "shmbus":
        import shmbus
        handle = f"killwriter-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        bus = shmbus.Bus(handle)
        bus.create_topic("t", capacity=RING_BYTES, max_message_size=SIZE)
        owned = [n for n in os.listdir("/dev/shm") if n.startswith("shmbus:" + handle)]
    elif lib == "mp.Queue":
        q = handle = ctx.Queue(maxsize=DEPTH)
        owned = semaphore_names(q)
    else:
        import faster_fifo
        import faster_fifo_reduction  # noqa: F401  (lets the queue travel to children)
        q = handle = faster_fifo.Queue(max_size_bytes=RING_BYTES)
    fault = kill if kill != "random" else None
    hot = rng.uniform(0.15, 0.5)
    res = dict(setup_error=False, carried=False, writer_stuck=False, reader_stuck=False,
               torn=0, disorder=0, lost=None, landed=None, resume=None, first=None, left=[],
               how=(None, None), slots=None)
    reader = ctx.Process(target=reader_main, args=(lib, handle, arr), daemon=True)
    writers = [ctx.Process(target=writer_main, args=(lib, handle, arr, w, fault if w == 0 else None, hot),
                           daemon=True) for w in (0, 1)]
    procs = [reader] + writers
    try:
        reader.start()
        for w in writers:
            w.start()
        if not wait_until(lambda: all(arr[READY + i] for i in range(3)) or any(arr[ERROR + i] for i in range(3)), 60) \
                or any(arr[ERROR + i] for i in range(3)):
            res["setup_error"] = True
            return res
        arr[GO] = 1
        victim, survivor = writers
        if fault is None:
            time.sleep(hot)
            os.kill(victim.pid, signal.SIGKILL)
            victim.join(args.timeout)
        else:  # the victim kills itself at its first send after `hot` seconds
            victim.join(hot + args.timeout)
        t_kill = time.monotonic()
        if victim.exitcode != -signal.SIGKILL:
            res["setup_error"] = True
            return res
        base = arr[ACKED + 1]
        k = CARRY_ON
        # Poll until the survivor has put, and the reader got, k new messages.  A
        # message of the survivor's numbered past `base` was put after the kill.
        writer_ok = reader_ok = False
        while time.monotonic() - t_kill < args.timeout and not (writer_ok and reader_ok):
            now = time.monotonic()
            if res["first"] is None and arr[RLAST + 1] > base:
                res["first"] = now - t_kill
            writer_ok = writer_ok or arr[ACKED + 1] >= base + k
            if not reader_ok and arr[RLAST + 1] >= base + k:
                reader_ok = True
                res["resume"] = now - t_kill
            time.sleep(0.005)
        res["writer_stuck"] = not writer_ok
        res["reader_stuck"] = not reader_ok
        if not (writer_ok and reader_ok):  # stuck how: blocked in a call, or refused/empty?
            if args.stacks:
                for who, p in (("reader", reader), ("survivor", survivor)):
                    print(f"    {lib} {who} (pid {p.pid}) waits in: {stack_of(p.pid)}", flush=True)
            b0, r0 = arr[BEAT], arr[REFUSED + 1]
            time.sleep(PUT_TIMEOUT + 0.2)
            res["how"] = (("survivor's put times out (Full)" if arr[REFUSED + 1] > r0 else "survivor blocked in put")
                          if not writer_ok else None,
                          ("reader's get times out (Empty)" if arr[BEAT] > b0 else "reader blocked in get")
                          if not reader_ok else None)
        arr[STOP] = 1
        stopped = wait_until(lambda: arr[DONE + 1], args.timeout if writer_ok else 0.5)
        if writer_ok and reader_ok and stopped:
            res["carried"] = True

            def drained():
                return all(arr[RCOUNT + w] >= arr[ACKED + w] + 1 for w in (0, 1))
            # Wait for the rest to arrive; a message lost for good never does, so
            # give up once nothing has arrived for a second.
            end = time.monotonic() + args.timeout
            seen, quiet_since = -1, time.monotonic()
            while time.monotonic() < end and not drained():
                n = arr[RCOUNT] + arr[RCOUNT + 1]
                if n != seen:
                    seen, quiet_since = n, time.monotonic()
                elif time.monotonic() - quiet_since > 1.0:
                    break
                time.sleep(0.01)
            res["lost"] = sum(max(0, arr[ACKED + w] + 1 - arr[RCOUNT + w]) for w in (0, 1))
            if lib == "mp.Queue":  # bounded-queue slots taken by messages that will never come
                res["slots"] = q.qsize()
        if lib == "mp.Queue":
            # Survivor stopped (or stuck); if the write lock can't be had for 1 s,
            # the dead victim holds it.
            got = q._wlock.acquire(timeout=1.0)
            if got:
                q._wlock.release()
            res["landed"] = not got
        elif lib == "shmbus":
            res["landed"] = bus.stats("t")["partitions"][0]["recovered_claims"] > 0
        else:
            res["landed"] = res["writer_stuck"] or res["reader_stuck"]  # inferred only
    finally:
        for p in procs:  # SIGKILL works on hung and stopped processes alike
            if p.is_alive():
                p.kill()
        for p in procs:
            p.join(5)
            if p.is_alive():
                res["left"].append(p.pid)
        res["torn"] = arr[TORN]
        res["disorder"] = arr[DISORDER] + arr[DISORDER + 1]
        if bus is not None:
            bus.unlink()
            bus.close()
        if q is not None:
            if lib == "mp.Queue":
                q.cancel_join_thread()
                q.close()
            del q, handle
            gc.collect()  # mp.Queue's named semaphores go with the object
        res["left_shm"] = [n for n in owned if os.path.exists(os.path.join("/dev/shm", n))]
    return res


# -- the report ------------------------------------------------------------------

ROWS = [("mp.Queue", "random"), ("faster-fifo", "random"), ("shmbus", "random"),
        ("shmbus", "after_claim:kill"), ("shmbus", "during_copy:kill")]

WHY = {
    "mp.Queue": "put() only appends to a buffer in the writer; its feeder thread writes to the "
                "pipe under a lock all writers share.  Killed while its feeder held that lock, "
                "the victim never releases it: the survivor's feeder waits for ever, so the "
                "reader gets nothing and the survivor's put() blocks once the queue's maxsize "
                "is reached.  Otherwise the others carry on, but every message the victim's "
                "put() had returned for and not yet flushed is lost, and the maxsize slots "
                "they took are never given back",
    "faster-fifo": "put() and get() work under a process-shared pthread mutex and "
                   "condition variables (glibc, not robust).  In the hangs we looked at with "
                   "--stacks, the victim had died inside put() waiting on the not-full condition "
                   "variable (the queue was full): the reader's get() then waits for ever in "
                   "pthread_cond_signal for that dead waiter, holding the mutex, and the "
                   "survivor's put() waits behind it; their timeouts do not apply.  A victim "
                   "killed holding the mutex would block them the same way.  Killed elsewhere, "
                   "nothing is lost or torn",
    "shmbus": "writers claim room and offsets independently (no lock); a dead writer's open "
              "claim becomes padding after the liveness timeout (1 s), so the reader pauses "
              "about that long ('first new'), the survivor never waits on the dead writer (only on the reader, if the ring "
              "fills meanwhile), and what a send "
              "had returned for is never lost",
}


def landed_text(lib, rows):
    n = sum(bool(r["landed"]) for r in rows)
    if lib == "mp.Queue":
        return f"{n} (write lock left held)"
    if lib == "faster-fifo":
        return f"{n}? (inferred from the hang)"
    return f"{n} (exact: recovered claims)"


def maxtime(rows, key):
    times = [r[key] for r in rows if r[key] is not None]
    return f"{max(times):.2f}" if times else "-"


def summarize(lib, kill, rows):
    ok = [r for r in rows if not r["setup_error"]]
    lost = [r["lost"] for r in ok if r["lost"] is not None]
    return {
        "library": lib,
        "kill": "random moment" if kill == "random" else "fault: " + kill.split(":")[0],
        "trials": len(ok),
        "carried on": sum(r["carried"] for r in ok),
        "writer stuck": sum(r["writer_stuck"] for r in ok),
        "reader stuck": sum(r["reader_stuck"] for r in ok),
        "torn": sum(r["torn"] for r in ok),
        "disorder": sum(r["disorder"] for r in ok),
        "lost acked": (f"{sum(lost)} in {sum(1 for x in lost if x)}/{len(lost)}" if lost else "n/a"),
        "kill landed in put": landed_text(lib, ok),
        "first new max s": maxtime(ok, "first"),
        f"{CARRY_ON} new max s": maxtime(ok, "resume"),
        "setup errors": len(rows) - len(ok),
        "left": sum(len(r["left"]) for r in rows),
        "left_shm": sorted({n for r in rows for n in r["left_shm"]}),
    }


COLUMNS = ["library", "kill", "trials", "carried on", "writer stuck", "reader stuck", "torn",
           "disorder", "lost acked", "first new max s", f"{CARRY_ON} new max s", "kill landed in put"]


def print_table(summaries):
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        widths = [max(len(c), *(len(str(s[c])) for s in summaries)) for c in COLUMNS]
        print("  ".join(c.ljust(w) for c, w in zip(COLUMNS, widths)))
        for s in summaries:
            print("  ".join(str(s[c]).ljust(w) for c, w in zip(COLUMNS, widths)))
        return
    t = Table(title="kill a writer mid-put: do the others carry on?")
    for c in COLUMNS:
        t.add_column(c, justify="left" if c in ("library", "kill", "lost acked", "kill landed in put") else "right")
    for s in summaries:
        t.add_row(*(str(s[c]) for c in COLUMNS))
    Console(width=200).print(t)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=6, help="trials per row (default 6)")
    ap.add_argument("--quick", action="store_true", help="3 trials per row")
    ap.add_argument("--timeout", type=float, default=5.0,
                    help="seconds the survivor has to put and the reader to get 2 queue depths of new messages (default 5)")
    ap.add_argument("--stacks", action="store_true",
                    help="on a hang, print where the stuck reader and survivor wait (needs gdb)")
    ap.add_argument("--only", choices=["mp.Queue", "faster-fifo", "shmbus"], action="append")
    ap.add_argument("--seed", type=int, default=None)
    args = ap.parse_args(argv)
    trials = 3 if args.quick else args.trials
    rng = random.Random(args.seed)
    ctx = mp.get_context("spawn")
    try:
        import faster_fifo  # noqa: F401
        have_ff = True
    except ImportError:
        have_ff = False

    m = describe(("shmbus", "cffi", "faster-fifo"))
    print("machine: " + ", ".join(f"{k} {v}" for k, v in m.items()))
    print(f"{trials} trials per row; 1 reader + 2 writers (spawn), {SIZE} B messages, depth ~{DEPTH}; "
          f"victim killed after 0.15-0.5 s of hot writing; hang = the survivor's next {CARRY_ON} messages not all put and delivered within {args.timeout:g} s")

    summaries, skipped = [], []
    t_start = time.monotonic()
    for lib, kill in ROWS:
        if args.only and lib not in args.only:
            continue
        if lib == "faster-fifo" and not have_ff:
            skipped.append("faster-fifo (not installed: pip install faster-fifo)")
            continue
        before = set(os.listdir("/dev/shm"))
        rows = []
        for i in range(trials):
            r = run_trial(ctx, lib, kill, rng, args)
            rows.append(r)
            print(f"  {lib:12} {kill:17} trial {i + 1:2}/{trials}: "
                  + ("setup error" if r["setup_error"] else
                     ("carried on" if r["carried"] else
                      "HUNG (" + ", ".join(x for x in r["how"] if x) + ")"))
                  + (f", first new message after {r['first']:.2f} s" if r["first"] is not None else "")
                  + (f", {CARRY_ON} after {r['resume']:.2f} s" if r["resume"] is not None else "")
                  + (f", lost {r['lost']} acked" if r["lost"] else "")
                  + (f", {r['slots']} of {DEPTH} queue slots never given back" if r["slots"] else "")
                  + (f", torn {r['torn']}" if r["torn"] else "")
                  + (", kill landed in put" if r["landed"] else ""), flush=True)
        s = summarize(lib, kill, rows)
        s["shm_new"] = sorted(set(os.listdir("/dev/shm")) - before)
        summaries.append(s)
    elapsed = time.monotonic() - t_start

    print()
    print_table(summaries)
    libs = []
    for s in summaries:
        if s["library"] not in libs:
            libs.append(s["library"])
    for lib in libs:
        print(f"{lib}: {WHY[lib]}.")
    print(f"Columns: 'writer stuck' = the survivor could not put {CARRY_ON} new messages within the timeout; "
          f"'reader stuck' = the reader did not get {CARRY_ON} of them; 'torn' = bad length/CRC; 'disorder' = a writer's messages out of "
          "order, duplicated or with a gap; 'lost acked' = messages whose put had returned that "
          "never arrived (only measurable when nothing hung); 'first new' and "
          f"'{CARRY_ON} new' = the longest time, over the trials, from the kill to the reader "
          "getting the first, and the 2048th, message the survivor put after it.  A reader "
          "that wedges a while after the kill can let the survivor's puts through first, so "
          "'reader stuck' may exceed 'writer stuck'.")
    for s in summaries:
        left, new = s["left_shm"], s["shm_new"]
        own = ("its bus's segments" if s["library"] == "shmbus" else
               "the queue's named semaphores" if s["library"] == "mp.Queue" else
               "no named objects (multiprocessing RawArrays, whose file is unlinked at once)")
        others = [n for n in new if n not in left and "killwriter-" not in n]
        print(f"/dev/shm after {s['library']} ({s['kill']}): "
              + (f"uses {own}" if s["library"] == "faster-fifo" else
                 f"{own} all removed" if not left else "LEFT: " + ", ".join(left))
              + (f"; {len(others)} other new entries, not ours (other users of this machine)" if others else "; nothing else new")
              + (f"; {s['left']} child processes survived SIGKILL" if s["left"] else "")
              + (f"; {s['setup errors']} trials failed to set up" if s["setup errors"] else ""))
    for x in skipped:
        print("skipped: " + x)
    print(f"total {elapsed:.0f} s")

    bad = False
    for s in summaries:
        if s["setup errors"] or s["left"] or s["left_shm"]:
            bad = True
        if s["library"] == "shmbus" and (s["carried on"] != s["trials"] or s["torn"] or s["disorder"]
                                         or not s["lost acked"].startswith("0 ")):
            bad = True
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
