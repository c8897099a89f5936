"""Dead letters: a message that failed ``max_deliveries`` times is published to the
group's dead-letter topic with headers that say why, then marked done.

The dead-letter topic is created when missing, with ``retention="log"`` and
``on_full="drop_oldest"`` (as API.md decides): dead letters stay for whoever
comes to look, and a full dead-letter topic overwrites its oldest ones rather
than stall the group.  Without a ``dead_letter`` topic the message is dropped and
counted as dead-lettered, as RabbitMQ does without a dead-letter exchange."""
from typing import TYPE_CHECKING, Callable, Dict, Optional, Tuple

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
        self.errors: Dict[Tuple[int, int], str] = {}  # (partition, offset) -> nack error

    def remember(self, partition: int, offset: int, error: str) -> None:
        if len(self.errors) >= MAX_REMEMBERED:
            del self.errors[next(iter(self.errors))]
        self.errors[(partition, offset)] = error[:MAX_ERROR]

    def publish(self, msg: "Message", flags: int) -> None:
        error = self.errors.pop((msg.partition, msg.offset), None)
        if self.topic is None:
            return
        headers = msg._raw_headers()
        headers.update({
            "shmbus.reason": reason_of(flags),
            "shmbus.topic": msg.topic,
            "shmbus.partition": str(msg.partition),
            "shmbus.offset": str(msg.offset),
            "shmbus.delivery_count": str(msg.delivery_count),
        })
        if self.group is not None:
            headers["shmbus.group"] = self.group
        if error is not None:
            headers["shmbus.error"] = error
        if self._producer is None:
            self._producer = self._opener(self.topic)
        try:
            self._producer.send(msg.value, key=msg.key, headers=headers)
        except MessageTooLargeError:  # our headers pushed it over: keep the message
            headers.pop("shmbus.error", None)
            self._producer.send(msg.value, key=msg.key, headers=headers)

    def close(self) -> None:
        if self._producer is not None:
            self._producer.close()
            self._producer = None
