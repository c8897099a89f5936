"""What every bridge shares: its counters, the loop that retries a lost
connection with exponential backoff, and how a message travels as fields."""
import json
import logging
import os
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional
from urllib.parse import urlparse

from .. import _headers
from .._errors import BusFull, ConfigError
from .._retry import ExponentialBackoff

log = logging.getLogger("shmbus.bridge")

BRIDGES_TOPIC = "shmbus.bridges"  # where bridges say how they are, for stat and top
REPORT_EVERY = 1.0  # seconds between two reports of a bridge
PAUSE_LOOK = 0.1  # in, a full topic: seconds between two looks at whether the bridge stops
BACKOFF_STEPS = 20  # retries after a lost connection: 0.1 s doubling to 5 s, then 5 s forever

# fields of a message in a remote log
VALUE, KEY, HEADERS, TIMESTAMP, ORIGIN = "v", "k", "h", "ts", "o"


def public_url(url: str) -> str:
    """``url`` without a user or password, for reports."""
    u = urlparse(url)
    port = f":{u.port}" if u.port else ""
    return f"{u.scheme}://{u.hostname}{port}{u.path}"


def group_name(kind: str, remote: str) -> str:
    """The local consumer group of an outbound bridge to ``remote`` (a stream
    or subject): ``bridge.KIND.REMOTE``, with what a group name cannot hold as '_'."""
    return f"bridge.{kind}.{re.sub(r'[^A-Za-z0-9._-]', '_', remote)}"[:100]


@dataclass
class BridgeStats:
    """What a bridge did; read from any thread (counts only grow)."""

    forwarded: int = 0        # messages the other side accepted
    connected: bool = False
    paused: bool = False      # in: the local topic is full, reading waits
    reconnects: int = 0       # connections lost and made again
    last_error: Optional[str] = None
    since_ns: int = field(default_factory=time.time_ns)


def fields_of(msg: Any, origin: str) -> Dict[str, bytes]:
    """A shmbus message as the fields of a remote record: value, key (absent
    for none), headers (shmbus's own encoding, msg_id included), timestamp and
    where it came from."""
    out = {VALUE: msg.value, TIMESTAMP: str(msg.timestamp).encode(),
           ORIGIN: f"{origin}/{msg.partition}:{msg.offset}".encode()}
    key = msg.key
    if key is not None:
        out[KEY] = key
    raw = msg._raw_headers()
    if raw:
        out[HEADERS] = _headers.encode(raw)
    return out


def send_fields(producer: Any, fields: Dict[bytes, bytes], timeout: Optional[float] = None) -> Any:
    """Publish a remote record's fields as a local message; a msg_id that
    travelled in its headers is given again, so the local topic's dedup window
    drops what the remote side delivered twice."""
    raw = fields.get(HEADERS.encode())
    headers = _headers.decode(raw) if raw else {}
    msg_id = headers.pop(_headers.MSG_ID, None)
    key = fields.get(KEY.encode())
    value = fields.get(VALUE.encode(), b"")
    if msg_id is None or not producer._dedup:
        return producer.send(value, key=key, headers=headers or None, timeout=timeout)
    return producer.send(value, key=key, headers=headers or None, msg_id=msg_id, timeout=timeout)


class Reporter:
    """A bridge's state as JSON on the bus's topic ``shmbus.bridges`` (a small
    log, keyed by bridge and process), where ``shmbus stat`` and ``top`` read
    the latest of each."""

    def __init__(self, bus: Any, describe: Dict[str, Any], stats: BridgeStats):
        bus.create_topic(BRIDGES_TOPIC, capacity=2**20, retention="log", on_full="drop_oldest",
                         exist_ok=True)
        self.producer = bus.producer(BRIDGES_TOPIC)
        self.describe = dict(describe, pid=os.getpid())
        self.key = f"{describe['name']}@{os.getpid()}"
        self.stats = stats
        self.last = 0.0

    def report(self, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self.last < REPORT_EVERY:
            return
        self.last = now
        record = dict(self.describe, forwarded=self.stats.forwarded, connected=self.stats.connected,
                      reconnects=self.stats.reconnects, last_error=self.stats.last_error,
                      paused=self.stats.paused, running=not final, time_ns=time.time_ns())
        self.producer.send(json.dumps(record).encode(), key=self.key)

    def close(self) -> None:
        self.producer.close()


def read_bridges(consumer: Any, known: Dict[str, Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Fold what ``shmbus.bridges`` gained into ``known`` (key -> latest
    report); the reports of bridges whose process is gone are marked so."""
    while True:
        batch = consumer.poll_batch(1000, timeout=0)
        if not batch:
            break
        for m in batch:
            known[m.key.decode()] = json.loads(m.value)
    out = []
    for r in known.values():
        alive = r["running"] and _pid_alive(r["pid"])
        out.append(dict(r, running=alive))
    return sorted(out, key=lambda r: (r["name"], r["pid"]))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Runner:
    """A bridge's loop: ``step()`` until stopped, a lost connection retried
    with exponential backoff (each retry logged and counted), its state
    reported every second."""

    def __init__(self, name: str, step: Callable[[], None], connect: Callable[[], None],
                 lost: tuple, stats: BridgeStats, reporter: Reporter):
        self.name, self.step, self.connect, self.lost, self.stats = name, step, connect, lost, stats
        self.reporter = reporter
        self.backoff = ExponentialBackoff(base=0.1, factor=2.0, max_delay=5.0, jitter=0.1,
                                          max_retries=BACKOFF_STEPS)
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def run(self, seconds: Optional[float] = None) -> None:
        end = None if seconds is None else time.monotonic() + seconds
        failures = 0
        while not self._stop.is_set() and (end is None or time.monotonic() < end):
            self.reporter.report()
            try:
                if not self.stats.connected:
                    self.connect()
                    self.stats.connected = True
                    if failures:
                        log.warning("%s: connected again after %d failures", self.name, failures)
                        self.stats.reconnects += 1
                    failures = 0
                self.step()
            except self.lost as e:
                self.stats.connected = False
                self.stats.last_error = f"{type(e).__name__}: {e}"
                failures += 1
                delay = self.backoff.delay(min(failures, BACKOFF_STEPS))
                log.warning("%s: %s; again in %.2f s", self.name, self.stats.last_error, delay)
                self._stop.wait(delay)
            except Exception as e:  # not a lost connection: the bridge ends, saying why
                self.stats.connected = False
                self.stats.last_error = f"{type(e).__name__}: {e}"
                log.error("%s stopped: %s", self.name, self.stats.last_error)
                self.reporter.report(final=True)
                raise
        self.reporter.report(final=True)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout: Optional[float] = None) -> bool:
        self._stop.set()
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()


class Bridge:
    """What both bridges share: checking the direction, the local end (a
    consumer of the group ``bridge.KIND.REMOTE`` with manual acks on the way
    out, a producer on the way in), the reporter, the loop and the lifetime.
    A subclass gives ``_out``, ``_in``, ``_connect`` and ``_close_remote``."""

    KIND = ""

    def _begin(self, bus: Any, topic: str, url: str, direction: str) -> None:
        if direction not in ("out", "in"):
            raise ConfigError(f"direction is 'out' or 'in', not {direction!r}")
        self.bus, self.topic, self.direction = bus, topic, direction
        self.stats = BridgeStats()
        self.origin = f"{bus.name}/{topic}"
        self._url = url

    def _end(self, remote: str, lost: tuple) -> None:
        """Open the local end and the loop, once the remote side is set up."""
        if self.direction == "out":
            self._local = self.bus.consumer(self.topic, group=group_name(self.KIND, remote),
                                            ack="manual", start="earliest")
        else:
            self._local = self.bus.producer(self.topic)
        name = f"{self.KIND}-bridge-{self.direction}:{remote}"
        self._reporter = Reporter(self.bus, dict(name=name, direction=self.direction,
                                                 topic=self.topic, remote=public_url(self._url)),
                                  self.stats)
        step = self._out if self.direction == "out" else self._in
        self._runner = Runner(name, step, self._connect, lost, self.stats, self._reporter)

    def _send_local(self, fields: Dict[bytes, bytes]) -> bool:
        """In: one remote record sent to the topic; a full topic is waited for,
        reading nothing more meanwhile (``stats.paused``).  False when the
        bridge is stopping before it had room: the record is not sent."""
        while True:
            try:
                send_fields(self._local, fields, timeout=PAUSE_LOOK)
                self.stats.paused = False
                return True
            except BusFull:
                self.stats.paused = True
                if self._runner.stopping:
                    return False

    def run(self, seconds: Optional[float] = None) -> None:
        """Forward until :meth:`stop` or ``seconds`` pass; a lost connection is
        retried with backoff (``stats.reconnects``, ``stats.last_error``)."""
        self._runner.run(seconds)

    @property
    def running(self) -> bool:
        """Whether its thread runs (False once stopped, or ended by an error:
        ``stats.last_error`` says which)."""
        return self._runner.running

    def start(self) -> "Bridge":
        """Run in a background thread."""
        self._runner.start()
        return self

    def stop(self, timeout: Optional[float] = 10.0) -> bool:
        """Stop after the batch in hand; True when the thread ended."""
        return self._runner.stop(timeout)

    def close(self) -> None:
        if self.stop():
            self._close_remote()
        self._local.close()
        self._reporter.close()

    def __enter__(self) -> "Bridge":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()
