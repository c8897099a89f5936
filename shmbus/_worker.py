"""Worker: a handler run in a pool of processes that are the members of one group
(``shmbus worker module:function --bus B --topic T --group G -c 4``)."""
import multiprocessing
import signal
import time
from typing import Any, Dict, List, Optional

from ._config import integer
from ._errors import ConfigError
from ._handling import Stats, load_handler, run
from ._retry import Retrying, retrying_of

STOP_GRACE = 5.0  # seconds a member may take to finish the message in hand


def _member(bus: str, path: Optional[str], topic: str, group: str, handler_ref: Any,
            retrying: Retrying, options: Dict[str, Any], stop: Any) -> None:
    """One worker process: a member of the group until ``stop`` is set."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops the pool
    from ._bus import Bus
    handler = load_handler(handler_ref)
    with Bus(bus, path=path) as b, b.consumer(topic, group=group, ack="manual", **options) as c:
        run(c, handler, retrying, Stats(), stop.is_set)


class Worker:
    """``handler(msg)`` for every message of ``topic``, in ``processes`` processes
    (spawned) that share the work as members of ``group`` with manual acks: a
    message is acked when the handler returns; when it raises, ``retrying``
    decides between a delayed redelivery (``nack``) and the dead letters (see
    :class:`Retrying`; the dead letters go to ``dead_letter`` when given).  A
    member that dies (even SIGKILL) leaves its message to be delivered again to
    another; :meth:`run` starts a new member in its place.

    ``handler`` is a module-level function (it must pickle) or
    ``"module:function"``.  ``ordering="none"`` (the default here) lets every
    member take any message and lets a retrying message wait without holding
    the others back; ``"partition"`` keeps each partition's order, and a
    retrying message then holds back its partition's later messages."""

    def __init__(self, bus: str, topic: str, group: str, handler: Any, processes: int = 1, *,
                 path: Optional[str] = None, retrying: Optional[Retrying] = None,
                 ordering: str = "none", start: str = "earliest", ack_timeout: float = 30.0,
                 max_deliveries: Optional[int] = None, dead_letter: Optional[str] = None):
        integer(processes, "processes", 1)
        load_handler(handler)  # a bad reference fails here, not in every member
        self.retrying = retrying_of(retrying)
        from ._bus import Bus
        with Bus(bus, path=path) as b:  # the topic must exist; the options are checked once here
            b.consumer(topic, group=group, ack="manual", ordering=ordering, start=start,
                       ack_timeout=ack_timeout, max_deliveries=max_deliveries,
                       dead_letter=dead_letter).close()
        self.bus, self.path, self.topic, self.group = bus, path, topic, group
        self.handler, self.processes = handler, processes
        self._options = dict(ordering=ordering, start=start, ack_timeout=ack_timeout,
                             max_deliveries=max_deliveries, dead_letter=dead_letter)
        self._ctx = multiprocessing.get_context("spawn")
        self._stop = self._ctx.Event()
        self._members: List[Any] = []
        self.restarts = 0

    @property
    def pids(self) -> List[int]:
        """The members' process ids."""
        return [p.pid for p in self._members if p.is_alive()]

    def _spawn(self) -> Any:
        p = self._ctx.Process(target=_member, daemon=True, name=f"shmbus-worker-{self.group}", args=(
            self.bus, self.path, self.topic, self.group, self.handler, self.retrying,
            self._options, self._stop))
        p.start()
        return p

    def start(self) -> "Worker":
        """Start the members (returns at once)."""
        if self._members:
            raise ConfigError("this worker was started already")
        self._members = [self._spawn() for _ in range(self.processes)]
        return self

    def replace_dead(self) -> int:
        """Start a new member for each one that died; how many."""
        n = 0
        for k, p in enumerate(self._members):
            if not p.is_alive() and not self._stop.is_set():
                p.join(0)
                self._members[k] = self._spawn()
                n += 1
        self.restarts += n
        return n

    def run(self, seconds: Optional[float] = None) -> None:
        """Start (if not started), keep the pool full, and stop after ``seconds``
        or at Ctrl-C."""
        if not self._members:
            self.start()
        end = None if seconds is None else time.monotonic() + seconds
        try:
            while end is None or time.monotonic() < end:
                time.sleep(0.2)
                self.replace_dead()
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def stop(self, timeout: float = STOP_GRACE) -> None:
        """Ask every member to stop after the message in hand; one that has not
        ended after ``timeout`` seconds is killed (its message is delivered again)."""
        self._stop.set()
        end = time.monotonic() + timeout
        for p in self._members:
            p.join(max(0.0, end - time.monotonic()))
        for p in self._members:
            if p.is_alive():
                p.kill()
                p.join(5)

    def __enter__(self) -> "Worker":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
