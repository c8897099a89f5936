"""shmbus: one memory bus per run, one topic of depth min(1024 messages, 64 MiB)."""
import os
import uuid
from typing import Any, Optional, Tuple

NAME = "shmbus"
DIST = "shmbus"
RATE_HINT = 800_000  # messages/s at 64 B on the project's 2-core VM
TOPIC, GROUP = "t", "g"
SLACK = 256  # bytes of record overhead (headers of send_array included) per message


def unsupported(w) -> Optional[str]:
    try:
        import shmbus
    except ImportError:
        return "not installed (pip install shmbus)"
    if w.kind == "columnar" and not hasattr(shmbus.Consumer, "poll_columns"):
        return "needs poll_columns"
    return None


def open(w, path: Optional[str] = None, **topic: Any) -> Tuple[str, Optional[str]]:
    """A new bus (in memory, or on disk in ``path``/its name) with one topic sized
    for ``w``; ``topic`` overrides create_topic's options (for bench_disk.py and
    bench_retention.py)."""
    import shmbus
    name = f"bench-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    where = None if path is None else os.path.join(path, name)
    options = dict(capacity=w.depth * (w.size + SLACK), max_message_size=w.size,
                   max_messages=w.depth)
    with shmbus.Bus(name, path=where) as bus:
        bus.create_topic(TOPIC, **{**options, **topic})
    return name, where


def close(channel: Tuple[str, Optional[str]]) -> None:
    import shmbus
    name, where = channel
    try:
        bus = shmbus.Bus(name, path=where, create=False)
    except shmbus.ShmbusError:  # gone already
        return
    try:
        bus.unlink()
    finally:
        bus.close()


class Sender:
    def __init__(self, channel: Tuple[str, Optional[str]], w):
        import shmbus
        self.bus = shmbus.Bus(channel[0], path=channel[1])
        self.producer = self.bus.producer(TOPIC)
        self.send = self.producer.send_array if w.kind == "numpy" else self.producer.send
        self.send_many = self.producer.send_many
        self.send_rows = self.producer.send_many  # a 2-D array: one message per row

    def close(self) -> None:
        self.producer.close()
        self.bus.close()


class Receiver:
    def __init__(self, channel: Tuple[str, Optional[str]], w):
        import shmbus
        self.bus = shmbus.Bus(channel[0], path=channel[1])
        spin = {} if w.kind != "ping" else {"spin": 1.0 if w.spin else 0.0}
        # competing consumers as RabbitMQ or PUSH/PULL have them: each takes the next
        # message whoever holds the partition (ordering="partition" would let one
        # member at a time read a one-partition topic)
        share = dict(group=GROUP, ordering="none") if w.pattern == "share" and w.consumers > 1 else {}
        self.consumer = self.bus.consumer(TOPIC, start="earliest", **share, **spin)
        self.timeout = w.timeout
        self._poll = self.consumer.poll
        if w.kind == "numpy":
            self.recv = self._recv_array

    def recv(self) -> Any:
        m = self._poll(self.timeout)
        return None if m is None else m.value

    def _recv_array(self) -> Any:
        m = self._poll(self.timeout)
        return None if m is None else m.array()

    def recv_many(self, max_messages: int) -> list:
        return [m.value for m in self.consumer.poll_batch(max_messages, self.timeout)]

    def recv_rows(self, max_messages: int) -> Any:
        return self.consumer.poll_columns(max_messages, self.timeout).rows()

    def close(self) -> None:
        self.consumer.close()
        self.bus.close()


def sender(channel: Tuple[str, Optional[str]], w, index: int) -> Sender:
    return Sender(channel, w)


def receiver(channel: Tuple[str, Optional[str]], w, index: int) -> Receiver:
    return Receiver(channel, w)
