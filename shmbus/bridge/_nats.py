"""NatsBridge: a topic to a NATS JetStream subject (``out``) or a subject to a
topic (``in``), at least once, through nats-py (asyncio, on a loop of the
bridge's own thread).

Out: as the Redis bridge, the topic is read as the consumer group
``bridge.nats.SUBJECT`` with manual acks, a batch is published with one
``Nats-Msg-Id`` per message (``BUS/TOPIC/PARTITION:OFFSET``), and acked locally
once JetStream acknowledged every message: a message published again after a
bridge restart falls in the stream's duplicate window and is dropped there.

In: a durable pull consumer (``shmbus_BUS_TOPIC``) fetches a batch; each message
is sent to the topic, and the batch acked to JetStream after its sends returned; a full
topic pauses fetching.  The stream capturing the subject is made
(``SHMBUS_SUBJECT``) when none does.  Keys, headers and timestamps travel in
``Shmbus-*`` headers (bytes as base64)."""
import asyncio
import base64
import re
from typing import Any, Dict, List, Optional
from urllib.parse import urlparse

from .._config import seconds
from .._errors import ConfigError
from ._common import HEADERS, KEY, ORIGIN, TIMESTAMP, VALUE, Bridge, fields_of

BATCH = 256
FETCH_WAIT = 0.1
PUBLISH_WAIT = 2.0  # seconds JetStream has to acknowledge a publish
# fields as NATS headers (str values): which are base64
_AS_HEADER = {KEY: ("Shmbus-Key", True), HEADERS: ("Shmbus-Headers", True),
              TIMESTAMP: ("Shmbus-Timestamp", False), ORIGIN: ("Shmbus-Origin", False)}


def _nats():
    try:
        import nats
    except ImportError:
        raise ConfigError("the NATS bridge needs nats-py: pip install 'shmbus[bridge]'") from None
    return nats


def parse_url(url: str):
    """(server URL, subject) of ``nats://HOST:PORT/SUBJECT``."""
    u = urlparse(url)
    subject = u.path.lstrip("/")
    if u.scheme not in ("nats", "tls") or not u.hostname or not subject or "/" in subject:
        raise ConfigError(f"a NATS bridge URL is nats://HOST:PORT/SUBJECT, got {url!r}")
    return f"{u.scheme}://{u.netloc}", subject


def _token(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", text)


class NatsBridge(Bridge):
    """``direction="out"``: ``topic`` of ``bus`` to the subject of ``url``;
    ``"in"``: the subject to the topic, through a durable consumer whose
    ``ack_wait`` is how long JetStream waits for the ack of a message fetched
    (by a bridge that may have died) before it delivers it again.  :meth:`run`
    in this thread, or :meth:`start` / :meth:`stop`; ``stats`` says what it did."""

    KIND = "nats"

    def __init__(self, bus: Any, topic: str, url: str, direction: str = "out", *,
                 ack_wait: float = 30.0):
        self._begin(bus, topic, url, direction)
        self.nats = _nats()
        self.server, self.subject = parse_url(url)
        self.ack_wait = seconds(ack_wait, "ack_wait", allow_none=False)
        self.durable = f"shmbus_{_token(bus.name)}_{_token(topic)}"
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._nc: Any = None
        self._js: Any = None
        self._sub: Any = None
        errors = self.nats.errors
        self._end(self.subject, (errors.ConnectionClosedError, errors.NoServersError,
                                 errors.StaleConnectionError, errors.TimeoutError,
                                 errors.NoRespondersError, ConnectionError, OSError,
                                 asyncio.TimeoutError))

    def _run(self, coro: Any) -> Any:
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        return self._loop.run_until_complete(coro)

    def _connect(self) -> None:
        self._run(self._aconnect())

    async def _aconnect(self) -> None:
        await self._aclose()
        self._nc = await self.nats.connect(self.server, connect_timeout=2, allow_reconnect=False,
                                           max_reconnect_attempts=0)
        self._js = self._nc.jetstream()
        try:
            await self._js.find_stream_name_by_subject(self.subject)
        except self.nats.js.errors.NotFoundError:
            await self._js.add_stream(name=f"SHMBUS_{_token(self.subject)}", subjects=[self.subject])
        if self.direction == "in":
            config = self.nats.js.api.ConsumerConfig(ack_wait=self.ack_wait)
            self._sub = await self._js.pull_subscribe(self.subject, durable=self.durable,
                                                      config=config)

    async def _aclose(self) -> None:
        if self._nc is not None:
            try:
                await self._nc.close()
            except Exception:  # noqa: BLE001 - a connection already gone closes as it can
                pass
        self._nc = self._js = self._sub = None

    # -- out -------------------------------------------------------------------------

    def _out(self) -> None:
        batch = self._local.poll_batch(BATCH, timeout=FETCH_WAIT)
        if batch:
            self._run(self._publish([fields_of(m, self.origin) for m in batch]))
            self._local.ack(batch)
            self.stats.forwarded += len(batch)

    async def _publish(self, records: List[Dict[str, bytes]]) -> None:
        await asyncio.gather(*(self._js.publish(self.subject, r[VALUE], headers=_headers_of(r),
                                                timeout=PUBLISH_WAIT) for r in records))

    # -- in --------------------------------------------------------------------------

    def _in(self) -> None:
        try:
            msgs = self._run(self._sub.fetch(BATCH, timeout=FETCH_WAIT))
        except self.nats.errors.TimeoutError:
            return  # nothing came
        sent = []
        try:
            for m in msgs:
                if not self._send_local(_record_of(m)):
                    return  # stopping: what is not acked, JetStream delivers again
                sent.append(m)
        finally:  # what was sent, acked together
            if sent:
                self._run(_ack_all(sent))
                self.stats.forwarded += len(sent)

    def _close_remote(self) -> None:
        if self._loop is not None:
            self._run(self._aclose())
            self._loop.close()

async def _ack_all(msgs: List[Any]) -> None:
    await asyncio.gather(*(m.ack() for m in msgs))


def _headers_of(record: Dict[str, bytes]) -> Dict[str, str]:
    out = {"Nats-Msg-Id": record[ORIGIN].decode()}
    for field, (name, b64) in _AS_HEADER.items():
        if field in record:
            out[name] = base64.b64encode(record[field]).decode() if b64 else record[field].decode()
    return out


def _record_of(msg: Any) -> Dict[bytes, bytes]:
    """A NATS message as the fields ``send_fields`` takes."""
    out = {VALUE.encode(): msg.data}
    headers = msg.headers or {}
    for field, (name, b64) in _AS_HEADER.items():
        if name in headers:
            out[field.encode()] = base64.b64decode(headers[name]) if b64 else headers[name].encode()
    return out
