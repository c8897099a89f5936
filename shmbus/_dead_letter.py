"""Dead letters: a message that failed ``max_deliveries`` times is published to the
group's dead-letter topic with headers that say why, then marked done.

The dead-letter topic is created when missing, with ``retention="log"`` and
``on_full="drop_oldest"`` (as API.md decides): dead letters stay for whoever
comes to look, and a full dead-letter topic overwrites its oldest ones rather
than stall the group.  Without a ``dead_letter`` topic the message is dropped and
counted as dead-lettered, as RabbitMQ does without a dead-letter exchange."""
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional, Tuple

from ._errors import MessageTooLargeError, TopicNotFoundError
from ._native import lib

if TYPE_CHECKING:
    from ._message import Message
    from ._producer import Producer

REASONS = {
    lib.SHMBUS_REASON_NONE: "unknown",
    lib.SHMBUS_REASON_NACK: "nack",
    lib.SHMBUS_REASON_ACK_TIMEOUT: "ack_timeout",
    lib.SHMBUS_REASON_MEMBER_LEFT: "member_left",
}
ON_FULL = "drop_oldest"
RETENTION = "log"
MAX_ERROR = 1000  # characters of a nack's error kept in shmbus.error
MAX_REMEMBERED = 10000  # nack errors remembered per consumer
REJECTED = "rejected"  # the reason of a message dead-lettered by Consumer.dead_letter


def describe(error: Any) -> Tuple[Optional[str], str]:
    """(its type's name, its text) for an exception; (None, the text) otherwise."""
    if isinstance(error, BaseException):
        kind = type(error)
        name = kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
        return name, f"{kind.__name__}: {error}"[:MAX_ERROR]
    return None, str(error)[:MAX_ERROR]


def reason_of(flags: int) -> str:
    return REASONS[(flags >> lib.SHMBUS_DF_REASON_SHIFT) & 3]


def open_producer(bus, topic: str) -> "Producer":
    """A producer on the dead-letter topic, creating the topic when missing."""
    try:
        return bus.producer(topic)
    except TopicNotFoundError:
        bus.create_topic(topic, on_full=ON_FULL, retention=RETENTION, exist_ok=True)
        return bus.producer(topic)


class DeadLetters:
    """Passes one consumer's dead letters on."""

    def __init__(self, topic: Optional[str], group: Optional[str],
                 opener: Callable[[str], "Producer"]):
        self.topic = topic
        self.group = group
        self._opener = opener
        self._producer: Optional["Producer"] = None
        # (partition, offset) -> the last nack's error: (type, text)
        self.errors: Dict[Tuple[int, int], Tuple[Optional[str], str]] = {}

    def remember(self, partition: int, offset: int, error: Any) -> None:
        if len(self.errors) >= MAX_REMEMBERED:
            del self.errors[next(iter(self.errors))]
        self.errors[(partition, offset)] = describe(error)

    def publish(self, msg: "Message", flags: int, reason: Optional[str] = None,
                error: Any = None) -> None:
        """Publish ``msg`` to the dead-letter topic; ``reason`` (else the one in
        ``flags``) and ``error`` (else the last one a nack of it gave) in headers."""
        remembered = self.errors.pop((msg.partition, msg.offset), None)
        if self.topic is None:
            return
        error_type, error_text = describe(error) if error is not None else remembered or (None, None)
        headers = msg._raw_headers()
        headers.update({
            "shmbus.reason": reason or reason_of(flags),
            "shmbus.topic": msg.topic,
            "shmbus.partition": str(msg.partition),
            "shmbus.offset": str(msg.offset),
            "shmbus.delivery_count": str(msg.delivery_count),
        })
        if self.group is not None:
            headers["shmbus.group"] = self.group
        if error_text is not None:
            headers["shmbus.error"] = error_text
        if error_type is not None:
            headers["shmbus.error_type"] = error_type
        if self._producer is None:
            self._producer = self._opener(self.topic)
        try:
            self._producer.send(msg.value, key=msg.key, headers=headers)
        except MessageTooLargeError:  # our headers pushed it over: keep the message
            headers.pop("shmbus.error", None)
            headers.pop("shmbus.error_type", None)
            self._producer.send(msg.value, key=msg.key, headers=headers)

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close()
            self._producer = None
