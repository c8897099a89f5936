"""RedisBridge: a topic to a Redis stream (``out``) or a stream to a topic
(``in``), at least once.

Out: the bridge reads the topic as a member of the consumer group
``bridge.redis.STREAM`` with manual acks, ``XADD``s a batch in one pipeline, and acks
the batch locally only once Redis accepted all of it; the group's committed
offsets are the checkpoint (a restarted bridge goes on from them; what was
added and not yet acked is added again).

In: the bridge reads the stream with ``XREADGROUP`` as consumer ``NAME`` of the
Redis group ``shmbus:BUS/TOPIC`` (made at the start of the stream if missing),
sends each entry to the topic, and ``XACK``s a batch only after its sends returned;
a restarted bridge first takes again what it had read and not acked (its
pending entries).  A full topic blocks the send, and the bridge stops
reading: backpressure, not a buffer.  A msg_id that travelled in the headers
is given again, so the local dedup window drops what Redis delivered twice."""
from typing import Any, Optional
from urllib.parse import urlparse

from .._errors import ConfigError
from ._common import Bridge, fields_of

BATCH = 256
BLOCK_MS = 100


def _redis():
    try:
        import redis
    except ImportError:
        raise ConfigError("the Redis bridge needs redis-py: pip install 'shmbus[bridge]'") from None
    return redis


def parse_url(url: str):
    """(redis URL without the stream, stream name) of ``redis://HOST:PORT/STREAM``."""
    u = urlparse(url)
    stream = u.path.lstrip("/")
    if u.scheme not in ("redis", "rediss") or not u.hostname or not stream:
        raise ConfigError(f"a Redis bridge URL is redis://HOST:PORT/STREAM, got {url!r}")
    return f"{u.scheme}://{u.netloc}", stream


class RedisBridge(Bridge):
    """``direction="out"``: ``topic`` of ``bus`` to the stream of ``url``;
    ``"in"``: the stream to the topic.  ``maxlen`` caps the stream (approximate
    trimming) on the way out.  :meth:`run` in this thread, or
    :meth:`start` / :meth:`stop`; ``stats`` says what it did."""

    KIND = "redis"

    def __init__(self, bus: Any, topic: str, url: str, direction: str = "out", *,
                 maxlen: Optional[int] = None, name: str = "bridge"):
        self._begin(bus, topic, url, direction)
        self.redis = _redis()
        self.server, self.stream = parse_url(url)
        self.maxlen, self.name = maxlen, name
        self.group = f"shmbus:{self.origin}"
        self._client: Any = None
        self._pending_first = True
        self._end(self.stream, (self.redis.exceptions.ConnectionError,
                                self.redis.exceptions.TimeoutError))

    def _connect(self) -> None:
        if self._client is not None:
            self._client.close()
        self._client = self.redis.Redis.from_url(self.server, socket_timeout=5,
                                                 socket_connect_timeout=2)
        self._client.ping()
        if self.direction == "in":
            try:
                self._client.xgroup_create(self.stream, self.group, id="0", mkstream=True)
            except self.redis.exceptions.ResponseError as e:
                if "BUSYGROUP" not in str(e):
                    raise
            self._pending_first = True

    def _out(self) -> None:
        batch = self._local.poll_batch(BATCH, timeout=BLOCK_MS / 1000)
        if not batch:
            return
        pipe = self._client.pipeline(transaction=False)
        for m in batch:
            pipe.xadd(self.stream, fields_of(m, self.origin), maxlen=self.maxlen,
                      approximate=self.maxlen is not None)
        pipe.execute()
        self._local.ack(batch)
        self.stats.forwarded += len(batch)

    def _in(self) -> None:
        # after a (re)start, what this consumer read and did not ack comes first
        start = "0" if self._pending_first else ">"
        got = self._client.xreadgroup(self.group, self.name, {self.stream: start}, count=BATCH,
                                      block=None if start == "0" else BLOCK_MS)
        entries = got[0][1] if got else []
        if start == "0" and not entries:
            self._pending_first = False
            return
        sent = []
        try:
            for entry_id, fields in entries:
                if not self._send_local(fields):
                    return  # stopping: what is not acked is read again by the next start
                sent.append(entry_id)
        finally:  # what was sent, acked in one call
            if sent:
                self._client.xack(self.stream, self.group, *sent)
                self.stats.forwarded += len(sent)

    def _close_remote(self) -> None:
        if self._client is not None:
            self._client.close()
