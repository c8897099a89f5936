"""Deduplicator: the consumer side of idempotency.  Remembers the ids of messages
already processed, for ``window`` seconds, in a topic of the bus, so that the
memory survives a consumer's restart (and is shared by the members of a group)."""
import time
from typing import Any, Dict

from . import _names
from ._config import seconds
from ._errors import ConfigError

SUFFIX = ".dedup"
BATCH = 4096


def _id_bytes(msg_id: Any) -> bytes:
    if isinstance(msg_id, str):
        return msg_id.encode()
    if isinstance(msg_id, (bytes, bytearray, memoryview)):
        return bytes(msg_id)
    raise TypeError(f"an id is str or bytes, not {type(msg_id).__name__}")


class Deduplicator:
    """Ids seen within the last ``window`` seconds.

    ``first(id)`` is True the first time an id comes within the window (and
    marks it), False after; or ask ``seen(id)`` before processing and
    ``mark(id)`` after it succeeded, so that a message whose processing failed
    is processed again.  Marks are kept in the topic ``NAME.dedup`` of ``bus``
    (``retention="log"``, ``retention_seconds=window``, ``on_full="drop_oldest"``:
    bounded, never blocking), read back when a Deduplicator of that name opens:
    a consumer that restarts, or another member of its group, knows what was
    done.  Not a lock: two processes asking about one id at the same instant
    may both hear "first"; in a group a message is delivered to one member at a
    time, so this covers redeliveries after a crash, a timeout or a nack, and
    duplicates sent by producers."""

    def __init__(self, bus: Any, name: str, window: float = 600.0, capacity: int = 16 * 2**20):
        self.window = seconds(window, "window", allow_none=False)
        if self.window <= 0:
            raise ConfigError(f"window must be > 0 seconds, got {window!r}")
        self.topic = _names.check_name(name, "deduplicator") + SUFFIX
        _names.check_name(self.topic, "topic")
        bus.create_topic(self.topic, retention="log", retention_seconds=self.window,
                         on_full="drop_oldest", capacity=capacity, dedup_capacity=0, exist_ok=True)
        self._producer = bus.producer(self.topic)
        self._reader = bus.consumer(self.topic, start="earliest", tethered=False)
        self._seen: Dict[bytes, int] = {}  # id -> when it was marked (ns), oldest first
        self._catch_up()

    def _catch_up(self) -> None:
        """Take in the marks written since the last look (by anyone), forget the old."""
        while True:
            batch = self._reader.poll_batch(BATCH, timeout=0)
            for m in batch:
                key = m.value
                self._seen.pop(key, None)
                self._seen[key] = m.timestamp
            if len(batch) < BATCH:
                break
        cutoff = time.time_ns() - int(self.window * 1e9)
        while self._seen:
            key, ts = next(iter(self._seen.items()))
            if ts >= cutoff:
                break
            del self._seen[key]

    def seen(self, msg_id: Any) -> bool:
        """Whether ``msg_id`` was marked within the window."""
        key = _id_bytes(msg_id)
        self._catch_up()
        return key in self._seen

    def mark(self, msg_id: Any) -> None:
        """Remember ``msg_id`` (as processed) for the window."""
        self._producer.send(_id_bytes(msg_id))

    def first(self, msg_id: Any) -> bool:
        """True (and marks it) unless ``msg_id`` was marked within the window."""
        if self.seen(msg_id):
            return False
        self.mark(msg_id)
        return True

    def __len__(self) -> int:
        """Ids remembered now."""
        self._catch_up()
        return len(self._seen)

    def close(self) -> None:
        self._producer.close()
        self._reader.close()

    def __enter__(self) -> "Deduplicator":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
