"""Children for the cross-process tests: started with the spawn context, their
results collected on one queue, every wait bounded, every child killed at the end."""
import os
import queue
import signal
import time

import _workers

RESULT_WAIT = 60.0


class Flag:
    """A flag the parent sets and children poll, that a SIGKILLed child cannot
    break.  A multiprocessing.Event takes a lock in is_set(): a child killed
    holding it blocks every other process that touches the Event, forever (the
    very failure shmbus exists to avoid; it once hung a soak)."""

    def __init__(self, ctx):
        self._v = ctx.RawValue("b", 0)

    def set(self):
        self._v.value = 1

    def is_set(self):
        return bool(self._v.value)

    def wait(self, timeout):
        end = time.monotonic() + timeout
        while not self._v.value and time.monotonic() < end:
            time.sleep(0.01)
        return bool(self._v.value)


class Procs:
    """Children started with the spawn context; their results come back on one
    queue, tagged with the child's label."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.results = ctx.Queue()
        self.procs = {}
        self.got = {}

    def start(self, label, fname, env=None, **kwargs):
        saved = {}
        for k, v in (env or {}).items():  # a spawned child copies the environment at start
            saved[k] = os.environ.get(k)
            os.environ[k] = v
        try:
            p = self.ctx.Process(target=_workers.run, args=(self.results, label, fname, kwargs),
                                 name=f"shmbus-test-{label}", daemon=True)
            p.start()
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        self.procs[label] = p
        return p

    def result(self, label, timeout=RESULT_WAIT):
        """The child's report; fails (never hangs) if it does not come in time."""
        deadline = time.monotonic() + timeout
        dead_since = None
        while label not in self.got:
            left = deadline - time.monotonic()
            if left <= 0:
                p = self.procs[label]
                raise AssertionError(f"no result from {label!r} within {timeout}s "
                                     f"(alive={p.is_alive()}, exitcode={p.exitcode})")
            try:
                lab, status, out = self.results.get(timeout=min(left, 0.25))
            except queue.Empty:
                p = self.procs[label]
                if p.exitcode is not None:  # died without reporting? allow for the pipe
                    dead_since = dead_since or time.monotonic()
                    if time.monotonic() - dead_since > 2.0:
                        raise AssertionError(f"{label!r} exited with {p.exitcode} without a result")
                continue
            if status == "error":
                raise AssertionError(f"child {lab!r} failed:\n{out}")
            self.got[lab] = out
        return self.got.pop(label)

    def join(self, label, timeout=10.0):
        p = self.procs[label]
        p.join(timeout)
        assert p.exitcode is not None, f"{label!r} did not exit within {timeout}s"
        return p.exitcode

    def close(self):
        for p in self.procs.values():
            if p.is_alive():
                try:
                    os.kill(p.pid, signal.SIGCONT)  # in case a test left it stopped
                except OSError:
                    pass
                p.kill()
        for p in self.procs.values():
            p.join(10)
        alive = [p.name for p in self.procs.values() if p.is_alive()]
        self.results.cancel_join_thread()
        self.results.close()
        assert not alive, f"children still alive after SIGKILL: {alive}"


def wait_ready(*events, timeout=30.0):
    for ev in events:
        assert ev.wait(timeout), "a child did not get ready in time"


def wait_until(cond, timeout, what, step=0.02):
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(step)
