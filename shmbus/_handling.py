"""Running a handler over a consumer's messages: push delivery
(``Consumer.subscribe``) and the body of every :class:`~shmbus.Worker` process.

One message at a time: poll, call the handler, then (``ack="manual"``) ack it
on success; on an exception ask :class:`~shmbus.Retrying` what to do: ``nack``
with the policy's delay (delivered again later, to any member under
``ordering="none"``; under ``ordering="partition"`` the partition's later
messages wait for it, so order holds) or ``dead_letter`` at once (permanent, or
retries used up).  With ``ack="auto"`` a failed message is not delivered again
(at-most-once): the error is counted and the loop goes on.

Backpressure: the loop takes the next message only when the handler returned,
so at most the consumer's prefetch is in flight (64 fetched with automatic
acks, 1 with manual acks) however slow the handler is; nothing piles up in
memory."""
import importlib
import threading
from typing import Any, Callable, Optional

from ._errors import ClosedError, ConfigError
from ._retry import Retrying, retrying_of

Handler = Callable[[Any], Any]
WAIT_SLICE = 0.1  # seconds a poll waits before the loop looks at its stop flag


def load_handler(ref: Any) -> Handler:
    """A callable, or ``"module:function"`` imported."""
    if callable(ref):
        return ref
    if not isinstance(ref, str) or ref.count(":") != 1:
        raise ConfigError(f"a handler is a callable or 'module:function', got {ref!r}")
    module, name = ref.split(":")
    try:
        fn = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"cannot load handler {ref!r}: {e}") from None
    if not callable(fn):
        raise ConfigError(f"handler {ref!r} is not callable")
    return fn


class Stats:
    """What a handling loop did (read from any thread; counts only grow)."""

    def __init__(self) -> None:
        self.handled = 0    # the handler returned
        self.retried = 0    # nacked with a delay, to come again
        self.dead = 0       # sent to the dead letters
        self.failed = 0     # raised under ack="auto": not delivered again
        self.last_error: Optional[BaseException] = None


def handle(consumer: Any, msg: Any, handler: Handler, retrying: Retrying, stats: Stats) -> None:
    """Run the handler on one message and settle it."""
    try:
        handler(msg)
    except Exception as e:  # noqa: BLE001 - a handler's failure is the message's, not the loop's
        stats.last_error = e
        if not consumer._manual:
            stats.failed += 1
            return
        _, delay = retrying.decide(e, msg.delivery_count)
        if delay is None:
            consumer.dead_letter(msg, error=e)
            stats.dead += 1
        else:
            consumer.nack(msg, delay, error=e)
            stats.retried += 1
        return
    if consumer._manual:
        consumer.ack(msg)
    stats.handled += 1


def run(consumer: Any, handler: Handler, retrying: Retrying, stats: Stats,
        stop: Callable[[], bool]) -> None:
    """Handle messages until ``stop()`` is true or the consumer is closed."""
    while not stop():
        try:
            msg = consumer.poll(WAIT_SLICE)
        except ClosedError:
            return
        if msg is not None:
            handle(consumer, msg, handler, retrying, stats)


class Subscription:
    """A handler running over a consumer in a background thread (see
    ``Consumer.subscribe``).  ``stop()`` ends it after the message in hand."""

    def __init__(self, consumer: Any, handler: Handler, retrying: Optional[Retrying]):
        self.consumer = consumer
        self.stats = Stats()
        self._stop = threading.Event()
        self._handler = load_handler(handler)
        self._retrying = retrying_of(retrying)
        self._thread = threading.Thread(target=self._run, name=f"shmbus-subscribe-{consumer.topic}",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        run(self.consumer, self._handler, self._retrying, self.stats, self._stop.is_set)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: Optional[float] = None) -> bool:
        """Stop taking messages and wait up to ``timeout`` seconds for the message
        in hand; whether the thread ended.  The consumer stays open."""
        self._stop.set()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)
        return not self._thread.is_alive()

    def __enter__(self) -> "Subscription":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()
