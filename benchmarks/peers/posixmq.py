"""posix_ipc.MessageQueue: POSIX message queues (mq_send / mq_timedreceive).

- A unique name per queue per run (``/shmbus-bench-<pid>-<random>-<n>``),
  created in ``open`` and unlinked in ``close``.
- The kernel bounds every queue by ``/proc/sys/fs/mqueue/msg_max`` messages of at
  most ``/proc/sys/fs/mqueue/msgsize_max`` bytes (10 and 8192 by default).  Only a
  process with CAP_SYS_RESOURCE may go past them, and the benchmark must not need
  that nor change system settings, so: depth = min(``w.depth``, msg_max), and a
  workload whose messages exceed msgsize_max is unsupported.  The per-user
  RLIMIT_MSGQUEUE (bytes in all queues) must also hold the queues of one run.
- fan-out ("each"): one queue per subscriber, the producer sends to each.
- share / many -> 1: one queue, any number of senders and receivers.
- ``receive(timeout=w.timeout)``; its ``BusyError`` on timeout becomes ``None``.
  ``send`` waits for room up to ``SEND_WAIT`` seconds, then raises ``BusyError``.
- numpy: ``send`` takes the array (buffer protocol); the receiver wraps the
  ``bytes`` with ``numpy.frombuffer`` (uint8).
- batch: unsupported, one message per system call, no batch API.
- Spin (ping with a busy-waiting receiver): ``receive(timeout=0)`` in a loop, the
  library's own non-blocking receive, until a message or ``w.timeout``.
"""
import builtins
import os
import resource
import secrets
import time
from functools import partial
from typing import Any, Optional

NAME = "posix_ipc"
DIST = "posix_ipc"

RATE_HINT = 200_000  # messages/s at 64 B, 1 -> 1, on the project's 2-core VM
SEND_WAIT = 60.0     # seconds a send waits for room before it raises BusyError

_KINDS = ("bytes", "numpy", "ping")
# Kernel bookkeeping per queued message (struct msg_msg and tree node), for the
# RLIMIT_MSGQUEUE estimate.
_KERNEL_OVERHEAD = 96


def _limit(name: str, default: int) -> int:
    try:
        with builtins.open(f"/proc/sys/fs/mqueue/{name}") as f:
            return int(f.read())
    except (OSError, ValueError):
        return default



def _queues(w) -> int:
    return w.consumers if (w.kind != "ping" and w.pattern == "each" and w.consumers > 1) else 1


def _depth(w) -> int:
    return min(w.depth, _limit("msg_max", 10))


def unsupported(w) -> Optional[str]:
    try:
        import posix_ipc
    except ImportError:
        return "not installed (pip install '.[bench]')"
    if not posix_ipc.MESSAGE_QUEUES_SUPPORTED:
        return "POSIX message queues not supported on this platform"
    if w.kind == "batch":
        return "no batch API (one message per mq_send / mq_receive)"
    if w.kind not in _KINDS:
        return f"no {w.kind} API"
    msgsize_max = _limit("msgsize_max", 8192)
    if w.size > msgsize_max:
        return (f"{w.size} B messages exceed the kernel's limit "
                f"(/proc/sys/fs/mqueue/msgsize_max = {msgsize_max})")
    need = _queues(w) * _depth(w) * (w.size + _KERNEL_OVERHEAD)
    soft, _ = resource.getrlimit(resource.RLIMIT_MSGQUEUE)
    if soft != resource.RLIM_INFINITY and need > soft:
        return f"the queues need {need} B, more than RLIMIT_MSGQUEUE ({soft} B)"
    return None


def open(w) -> Any:
    import posix_ipc
    base = f"/shmbus-bench-{os.getpid()}-{secrets.token_hex(4)}"
    names = []
    try:
        for n in range(_queues(w)):
            name = f"{base}-{n}"
            q = posix_ipc.MessageQueue(name, posix_ipc.O_CREX, max_messages=_depth(w),
                                       max_message_size=w.size)
            names.append(name)
            q.close()
    except BaseException:
        close({"names": names})
        raise
    return {"names": names}


def close(channel: Any) -> None:
    import posix_ipc
    for name in channel.get("names", ()):
        try:
            posix_ipc.unlink_message_queue(name)
        except posix_ipc.ExistentialError:
            pass


class Sender:
    def __init__(self, channel, w):
        import posix_ipc
        self._queues = [posix_ipc.MessageQueue(name) for name in channel["names"]]
        if len(self._queues) == 1:
            self.send = partial(self._queues[0].send, timeout=SEND_WAIT)

    def send(self, buf) -> None:  # fan-out: one send per subscriber's queue
        for q in self._queues:
            q.send(buf, SEND_WAIT)

    def close(self) -> None:
        for q in self._queues:
            q.close()


class Receiver:
    def __init__(self, channel, w, index: int):
        import posix_ipc
        names = channel["names"]
        self._q = posix_ipc.MessageQueue(names[index] if len(names) > 1 else names[0])
        self._receive = self._q.receive
        self._busy = posix_ipc.BusyError
        self._timeout = w.timeout
        numpy = w.kind == "numpy"
        if numpy:
            import numpy as np
            self._frombuffer = np.frombuffer
            self._uint8 = np.uint8
        if w.spin:
            self.recv = self._recv_spin
        elif numpy:
            self.recv = self._recv_numpy

    def recv(self):
        try:
            return self._receive(self._timeout)[0]
        except self._busy:
            return None

    def _recv_numpy(self):
        try:
            return self._frombuffer(self._receive(self._timeout)[0], self._uint8)
        except self._busy:
            return None

    def _recv_spin(self):
        receive, busy = self._receive, self._busy
        deadline = time.monotonic() + self._timeout
        while True:
            try:
                return receive(0)[0]
            except busy:
                if time.monotonic() > deadline:
                    return None

    def close(self) -> None:
        self._q.close()


def sender(channel: Any, w, index: int) -> Sender:
    return Sender(channel, w)


def receiver(channel: Any, w, index: int) -> Receiver:
    return Receiver(channel, w, index)
