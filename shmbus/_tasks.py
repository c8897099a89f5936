"""TaskQueue: asynchronous tasks with a status a client asks for later.

A task is a message of the topic ``NAME.tasks`` (value: the pickled name,
args and kwargs; key and msg_id: the task id, so a resubmitted id is not run
twice), run by a :class:`~shmbus.Worker` pool (group ``NAME.workers``) whose
handler looks the name up in the handlers it was given.  Every change of a
task's state is an event on ``NAME.status``, a ``retention="log"`` topic that
keeps ``result_ttl`` seconds of events (older ones are dropped, so a finished
task is forgotten after that); a TaskQueue folds the events into
:class:`TaskStatus` as it reads them.

States: ``pending`` (submitted, or waiting for a retry: ``error`` then says
what failed), ``running`` (``attempt``, ``worker_pid``, ``progress``), ``done``
(``result``) and ``failed`` (``error``: a permanent error, or retries used up;
the task is then in the dead letters, ``NAME.failed``).  A worker that dies
mid-task leaves its task to another (a new attempt), as any Worker message."""
import functools
import os
import pickle
import time
import uuid
from dataclasses import dataclass, replace
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

from ._config import seconds
from ._errors import ConfigError, ShmbusError
from ._handling import load_handler
from ._names import check_name
from ._retry import PermanentError, Retrying, retrying_of
from ._worker import Worker

PENDING, RUNNING, DONE, FAILED = "pending", "running", "done", "failed"
FINISHED = (DONE, FAILED)
STATUS_CAPACITY = 64 * 2**20  # bytes of status events kept (the oldest go first)


class TaskNotFoundError(ShmbusError, LookupError):
    """No such task: never submitted here, or forgotten after ``result_ttl``."""


class TaskFailedError(ShmbusError):
    """``TaskQueue.result`` of a task that failed; ``status`` has the details."""

    def __init__(self, message: str, status: "TaskStatus"):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class TaskStatus:
    """What is known of a task.  Times are nanoseconds since the epoch (0: not
    yet); ``error`` is ``"Type: text"`` of the last failure."""

    task_id: str
    name: str
    state: str
    attempt: int = 0
    progress: Optional[float] = None
    note: Optional[str] = None
    result: Any = None
    error: Optional[str] = None
    worker_pid: Optional[int] = None
    submitted_ns: int = 0
    started_ns: int = 0
    finished_ns: int = 0

    @property
    def finished(self) -> bool:
        return self.state in FINISHED


def _topics(name: str) -> Tuple[str, str, str, str]:
    """(tasks topic, status topic, worker group, dead-letter topic) of a queue."""
    return f"{name}.tasks", f"{name}.status", f"{name}.workers", f"{name}.failed"


def _error_text(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"


class TaskQueue:
    """Tasks submitted by name, run by a pool of worker processes, with a status.

    ::

        tasks = shmbus.TaskQueue(bus, "video")
        workers = tasks.serve({"transcode": "media:transcode"}, processes=4).start()
        task_id = tasks.submit("transcode", "upload-1.mov", height=720)   # at once
        tasks.status(task_id)             # TaskStatus(state="running", progress=0.4, ...)
        tasks.result(task_id, timeout=60) # the handler's return value

    A handler is called with the task's args and kwargs; it may call
    :func:`report_progress` to publish how far it is.  Its exceptions go through
    ``retrying`` (see :class:`Retrying`): retried with backoff (the task is
    ``pending`` again, ``error`` saying why) or failed.  Arguments and results
    must pickle."""

    def __init__(self, bus: Any, name: str, *, result_ttl: float = 3600.0,
                 retrying: Optional[Retrying] = None, ack_timeout: float = 300.0):
        self.name = check_name(name, "task queue")
        self.result_ttl = seconds(result_ttl, "result_ttl", allow_none=False)
        if self.result_ttl <= 0:
            raise ConfigError(f"result_ttl must be > 0 seconds, got {result_ttl!r}")
        self.retrying = retrying_of(retrying)
        self.ack_timeout = ack_timeout
        self.bus = bus
        self.tasks_topic, self.status_topic, self.group, self.dead_letter = _topics(self.name)
        bus.create_topic(self.tasks_topic, exist_ok=True)
        bus.create_topic(self.status_topic, retention="log", retention_seconds=self.result_ttl,
                         on_full="drop_oldest", capacity=STATUS_CAPACITY, exist_ok=True)
        self._tasks = bus.producer(self.tasks_topic)
        self._status = bus.producer(self.status_topic)
        self._reader = bus.consumer(self.status_topic, start="earliest", tethered=False)
        self._known: Dict[str, TaskStatus] = {}

    # -- clients -------------------------------------------------------------------

    def submit(self, name: str, *args: Any, task_id: Optional[str] = None, **kwargs: Any) -> str:
        """Queue the task ``name(*args, **kwargs)``; returns its id at once.
        ``task_id`` (a str) makes a submit idempotent: the same id submitted
        again within the bus's dedup window is not queued twice."""
        if not isinstance(name, str):
            raise TypeError(f"a task name is a str, not {type(name).__name__}")
        task_id = uuid.uuid4().hex if task_id is None else task_id
        if not isinstance(task_id, str) or not task_id:
            raise TypeError("task_id must be a non-empty str")
        body = pickle.dumps((name, args, kwargs), protocol=5)  # unpicklable: raises, nothing sent
        _emit(self._status, task_id, name, PENDING, submitted_ns=time.time_ns())
        try:
            self._tasks.send(body, key=task_id, msg_id=task_id)
        except BaseException as e:
            _emit(self._status, task_id, name, FAILED, error=f"not queued: {_error_text(e)}",
                  finished_ns=time.time_ns())
            raise
        return task_id

    def status(self, task_id: str) -> TaskStatus:
        """The task's status now (TaskNotFoundError if unknown here)."""
        self._catch_up(0)
        try:
            return self._known[task_id]
        except KeyError:
            raise TaskNotFoundError(f"no task {task_id!r} in {self.name!r}") from None

    def result(self, task_id: str, timeout: Optional[float] = None) -> Any:
        """Wait up to ``timeout`` seconds (None: as long as it takes) for the task
        to finish: its result, or TaskFailedError; TimeoutError if it has not
        finished in time."""
        end = None if timeout is None else time.monotonic() + timeout
        while True:
            self._catch_up(0)
            s = self._known.get(task_id)
            if s is not None and s.state == DONE:
                return s.result
            if s is not None and s.state == FAILED:
                raise TaskFailedError(f"task {task_id!r} ({s.name}) failed: {s.error}", s)
            left = 0.25 if end is None else end - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"task {task_id!r} has not finished "
                                   f"({s.state if s else 'unknown'}) after {timeout} s")
            self._catch_up(min(left, 0.25))

    def _catch_up(self, wait: float) -> None:
        """Fold the status events published since the last look (waiting up to
        ``wait`` seconds for the first)."""
        while True:
            batch = self._reader.poll_batch(1000, timeout=wait)
            if not batch:
                return
            for m in batch:
                self._fold(pickle.loads(m.value))
            wait = 0

    def _fold(self, event: Dict[str, Any]) -> None:
        tid = event.pop("task_id")
        before = self._known.get(tid)
        if before is None:
            before = TaskStatus(tid, event.get("name", ""), PENDING)
        elif before.finished and event["state"] not in FINISHED:
            return  # a late event of an attempt that lost the race: the end stands
        elif "submitted_ns" in event and before.submitted_ns:
            return  # submitted again (the queue kept it once): nothing changes
        known = {k: v for k, v in event.items() if k in TaskStatus.__dataclass_fields__}
        self._known[tid] = replace(before, **known)

    # -- workers -------------------------------------------------------------------

    def serve(self, handlers: Mapping[str, Any], processes: int = 1) -> Worker:
        """A :class:`Worker` of ``processes`` processes running this queue's
        tasks (not started: ``.start()``, or ``.run()`` until Ctrl-C).
        ``handlers`` maps task names to module-level functions or
        ``"module:function"``."""
        if not isinstance(handlers, Mapping) or not handlers:
            raise TypeError("handlers is a non-empty dict of task names to handlers")
        for ref in handlers.values():
            load_handler(ref)  # a bad reference fails here, not in every worker
        run = functools.partial(_run_task, self.bus.name, self.bus.path, self.status_topic,
                                dict(handlers), self.retrying)
        return Worker(self.bus.name, self.tasks_topic, self.group, run, processes,
                      path=self.bus.path, retrying=self.retrying, ack_timeout=self.ack_timeout,
                      dead_letter=self.dead_letter)

    # -- lifetime ------------------------------------------------------------------

    def close(self) -> None:
        for h in (self._tasks, self._status, self._reader):
            h.close()

    def __enter__(self) -> "TaskQueue":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _emit(producer: Any, task_id: str, name: str, state: str, **fields: Any) -> None:
    event = dict(fields, task_id=task_id, name=name, state=state)
    producer.send(pickle.dumps(event, protocol=5), key=task_id)


# -- inside a worker process ---------------------------------------------------------

_status_producers: Dict[Tuple[str, Optional[str], str], Any] = {}
_current: Optional[Callable[..., None]] = None  # report_progress of the task in hand


def report_progress(fraction: float, note: Optional[str] = None) -> None:
    """From inside a task's handler: publish how far it is (0.0 to 1.0) and an
    optional note; elsewhere it does nothing."""
    if not isinstance(fraction, (int, float)) or not 0.0 <= fraction <= 1.0:
        raise ValueError(f"progress is a fraction between 0 and 1, got {fraction!r}")
    if _current is not None:
        _current(float(fraction), note)


def _producer_of(bus: str, path: Optional[str], topic: str) -> Any:
    key = (bus, path, topic)
    p = _status_producers.get(key)
    if p is None or p.closed:
        from ._bus import Bus
        b = Bus(bus, path=path)
        p = _status_producers[key] = b.producer(topic)
    return p


def _run_task(bus: str, path: Optional[str], status_topic: str, handlers: Dict[str, Any],
              retrying: Retrying, msg: Any) -> None:
    """The Worker's handler: one task, its status events around it.  An
    exception goes on to the Worker, which retries or dead-letters the message
    as ``retrying`` decides; the status says the same beforehand."""
    global _current
    status = _producer_of(bus, path, status_topic)
    task_id = msg.key.decode()
    name, args, kwargs = pickle.loads(msg.value)
    attempt = msg.delivery_count
    try:
        handler = load_handler(handlers[name])
    except KeyError:
        error = PermanentError(f"no handler for task {name!r}")
        _emit(status, task_id, name, FAILED, error=_error_text(error), attempt=attempt,
              finished_ns=time.time_ns())
        raise error from None
    _emit(status, task_id, name, RUNNING, attempt=attempt, worker_pid=os.getpid(),
          started_ns=time.time_ns(), progress=None, note=None)
    _current = functools.partial(_progress, status, task_id, name)
    try:
        result = handler(*args, **kwargs)
        try:
            body = pickle.dumps(dict(task_id=task_id, name=name, state=DONE, result=result,
                                     finished_ns=time.time_ns(), progress=1.0), protocol=5)
        except Exception as e:  # noqa: BLE001 - whatever pickling raises, running again will not help
            raise PermanentError(f"the result of {name!r} does not pickle: {_error_text(e)}") from e
    except Exception as e:  # noqa: BLE001 - the task's failure, reported, then the Worker's to settle
        _, delay = retrying.decide(e, attempt)
        if delay is None:
            _emit(status, task_id, name, FAILED, error=_error_text(e), finished_ns=time.time_ns())
        else:
            _emit(status, task_id, name, PENDING, error=_error_text(e))
        raise
    finally:
        _current = None
    status.send(body, key=task_id)


def _progress(status: Any, task_id: str, name: str, fraction: float, note: Optional[str]) -> None:
    _emit(status, task_id, name, RUNNING, progress=fraction, note=note)
