"""Batcher: a handler given lists of messages, acknowledged together.

Messages are gathered until ``max_size`` are in hand or ``max_wait`` seconds
have passed since the first of them; the handler gets the list; when it
returns, the whole batch is acknowledged with one call, and when it raises,
:class:`~shmbus.Retrying` decides for the whole batch (on the highest
delivery count in it): every message is nacked with the policy's delay, or
every one goes to the dead letters.  The consumer must acknowledge by hand
(``ack="manual"``): a batch is held until its handler is done."""
import threading
import time
from typing import Any, Callable, List, Optional

from ._config import integer, seconds
from ._errors import ClosedError, ConfigError
from ._retry import Retrying, retrying_of

BatchHandler = Callable[[List[Any]], Any]


class Batcher:
    """``handler(messages)`` on batches of at most ``max_size`` messages of
    ``consumer``, each handed over at the latest ``max_wait`` seconds after its
    first message arrived.  :meth:`run` in this thread, or :meth:`start` a
    background thread (``stop()`` ends it after the batch in hand)."""

    def __init__(self, consumer: Any, handler: BatchHandler, max_size: int = 100,
                 max_wait: float = 1.0, retrying: Optional[Retrying] = None):
        if not getattr(consumer, "_manual", False):
            raise ConfigError("a Batcher needs a consumer with ack='manual': it holds each batch "
                              "until its handler is done")
        if not callable(handler):
            raise TypeError(f"handler must be callable, not {type(handler).__name__}")
        self.consumer = consumer
        self.handler = handler
        self.max_size = integer(max_size, "max_size", 1, 65536)
        self.max_wait = seconds(max_wait, "max_wait", allow_none=False)
        self.retrying = retrying_of(retrying)
        self.batches = self.messages = self.retried = self.dead = 0
        self.last_error: Optional[BaseException] = None
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def gather(self, wait: float = 0.1) -> List[Any]:
        """One batch: waits up to ``wait`` seconds for a first message (an empty
        list if none came), then up to ``max_wait`` for the rest."""
        c = self.consumer
        batch = c.poll_batch(self.max_size, timeout=wait)
        if not batch:
            return batch
        end = time.monotonic() + self.max_wait
        while len(batch) < self.max_size and not self._stop.is_set():
            left = end - time.monotonic()
            if left <= 0:
                break
            batch += c.poll_batch(self.max_size - len(batch), timeout=min(left, 0.1))
        return batch

    def handle(self, batch: List[Any]) -> None:
        """Run the handler on one batch and settle every message of it."""
        c = self.consumer
        try:
            self.handler(batch)
        except Exception as e:  # noqa: BLE001 - the batch's failure, settled below
            self.last_error = e
            _, delay = self.retrying.decide(e, max(m.delivery_count for m in batch))
            for m in batch:
                if delay is None:
                    c.dead_letter(m, error=e)
                else:
                    c.nack(m, delay, error=e)
            if delay is None:
                self.dead += len(batch)
            else:
                self.retried += len(batch)
            return
        c.ack(batch)
        self.batches += 1
        self.messages += len(batch)

    def run(self, seconds: Optional[float] = None) -> None:
        """Gather and handle batches until :meth:`stop`, ``seconds`` pass, or
        the consumer is closed."""
        end = None if seconds is None else time.monotonic() + seconds
        while not self._stop.is_set() and (end is None or time.monotonic() < end):
            try:
                batch = self.gather()
            except ClosedError:
                return
            if batch:
                self.handle(batch)

    def start(self) -> "Batcher":
        """Run in a background thread (daemon)."""
        if self._thread is not None:
            raise ConfigError("this Batcher was started already")
        self._thread = threading.Thread(target=self.run, name="shmbus-batcher", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: Optional[float] = None) -> bool:
        """Stop after the batch in hand; True if the thread (if any) ended."""
        self._stop.set()
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def __enter__(self) -> "Batcher":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
