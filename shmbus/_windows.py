"""Stream processing: tumbling and sliding windows keyed by event time.

:class:`Windows` is the logic alone (no bus): events ``(key, event_time,
value)`` are folded into every window that contains their event time; the
watermark is the highest event time seen minus ``delay`` (how far out of order
events may come); a window ``[start, end)`` is emitted, once and final, when
the watermark reaches ``end + lateness``.  An event whose every window was
emitted already is late: counted, and handed back for a side topic.

:class:`WindowedStream` runs it over a consumer: results go to an output
topic as JSON, late messages to a side topic if one is given.  Window state is
in memory: a stream that restarts reads again from where its windows begin
(on a ``retention="log"`` topic, ``seek_to_time``)."""
import json
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Hashable, List, Optional, Tuple

from ._config import seconds
from ._errors import ClosedError, ConfigError


@dataclass(frozen=True)
class WindowResult:
    """One window's aggregate: ``[start, end)`` in event-time seconds."""

    key: Any
    start: float
    end: float
    value: Any
    count: int

    def to_json(self) -> bytes:
        return json.dumps({"key": self.key, "start": self.start, "end": self.end,
                           "value": self.value, "count": self.count}).encode()


class Windows:
    """Windows of ``size`` seconds every ``slide`` seconds (None: tumbling,
    ``slide == size``), per key.  ``init()`` makes a window's empty aggregate and
    ``add(aggregate, value)`` folds a value in (it returns the new aggregate):
    by default a sum.  ``delay``: how late (in event time) an event may come and
    still be on time; ``lateness``: how long after that a window stays open for
    stragglers."""

    def __init__(self, size: float, slide: Optional[float] = None, *, delay: float = 0.0,
                 lateness: float = 0.0, init: Callable[[], Any] = int,
                 add: Callable[[Any, Any], Any] = lambda acc, v: acc + v):
        self.size = seconds(size, "size", allow_none=False)
        self.slide = self.size if slide is None else seconds(slide, "slide", allow_none=False)
        if self.size <= 0 or self.slide <= 0:
            raise ConfigError("a window's size and slide must be > 0")
        if self.slide > self.size:
            raise ConfigError(f"slide ({self.slide}) larger than size ({self.size}) would leave gaps")
        self.delay = seconds(delay, "delay", allow_none=False)
        self.lateness = seconds(lateness, "lateness", allow_none=False)
        self.init, self.fold = init, add
        self.watermark = -math.inf
        self.late = 0
        self._open: Dict[Tuple[Hashable, float], List[Any]] = {}  # (key, start) -> [aggregate, count]

    def starts(self, t: float) -> List[float]:
        """The starts of the windows that contain event time ``t``."""
        last = math.floor(t / self.slide) * self.slide
        out = []
        start = last
        while start > t - self.size:
            out.append(start)
            start -= self.slide
        return out[::-1]

    def add(self, key: Hashable, event_time: float, value: Any) -> Tuple[List[WindowResult], bool]:
        """Fold one event in: (the windows this event's watermark closes, whether
        the event was late and left out)."""
        late = True
        for start in self.starts(event_time):
            if start + self.size + self.lateness <= self.watermark:
                continue  # emitted already
            late = False
            slot = self._open.get((key, start))
            if slot is None:
                slot = self._open[(key, start)] = [self.init(), 0]
            slot[0] = self.fold(slot[0], value)
            slot[1] += 1
        if late:
            self.late += 1
        self.watermark = max(self.watermark, event_time - self.delay)
        return self._close(self.watermark), late

    def flush(self) -> List[WindowResult]:
        """Every open window, emitted now (at the end of a finite stream)."""
        return self._close(math.inf)

    def _close(self, watermark: float) -> List[WindowResult]:
        done = [(k, s) for (k, s) in self._open if s + self.size + self.lateness <= watermark]
        done.sort(key=lambda ks: (ks[1], str(ks[0])))
        out = []
        for k, s in done:
            value, count = self._open.pop((k, s))
            out.append(WindowResult(k, s, s + self.size, value, count))
        return out


class WindowedStream:
    """``windows`` over the messages of ``consumer``: ``event_time(msg)`` (seconds),
    ``key(msg)`` and ``value(msg)`` say what each message is; every emitted
    window goes to ``output`` (a Producer) as JSON keyed by its key; late
    messages are counted, and copied to ``late_output`` (a Producer) if given.
    ``on_message(msg)``, if given, sees every message first (an alert rule that
    must not wait for a window)."""

    def __init__(self, consumer: Any, windows: Windows, output: Any, *,
                 event_time: Callable[[Any], float], key: Callable[[Any], Hashable],
                 value: Callable[[Any], Any], late_output: Any = None,
                 on_message: Optional[Callable[[Any], None]] = None):
        self.consumer, self.windows, self.output = consumer, windows, output
        self.event_time, self.key, self.value = event_time, key, value
        self.late_output, self.on_message = late_output, on_message
        self.emitted = 0

    def _emit(self, results: List[WindowResult]) -> None:
        for r in results:
            self.output.send(r.to_json(), key=str(r.key))
        self.emitted += len(results)

    def run(self, seconds: Optional[float] = None, idle: Optional[float] = None) -> None:
        """Process messages until ``seconds`` pass, or nothing came for ``idle``
        seconds, or the consumer is closed; then emit what is still open if the
        stream ended by ``idle`` (a finite stream)."""
        end = None if seconds is None else time.monotonic() + seconds
        quiet_since = time.monotonic()
        while end is None or time.monotonic() < end:
            try:
                batch = self.consumer.poll_batch(1000, timeout=0.1)
            except ClosedError:
                return
            if not batch:
                if idle is not None and time.monotonic() - quiet_since >= idle:
                    self._emit(self.windows.flush())
                    return
                continue
            quiet_since = time.monotonic()
            for m in batch:
                if self.on_message is not None:
                    self.on_message(m)
                results, late = self.windows.add(self.key(m), self.event_time(m), self.value(m))
                if late and self.late_output is not None:
                    self.late_output.send(m.value, key=m.key, headers=m.headers)
                self._emit(results)
            if self.consumer._manual:
                self.consumer.ack(batch)
