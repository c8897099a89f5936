"""Bridges: a topic forwarded to or from a distributed log, at least once, keys
and headers kept: ``RedisBridge`` (Redis Streams, redis-py) and ``NatsBridge``
(NATS JetStream, nats-py); install with ``pip install 'shmbus[bridge]'``."""
from ._common import BridgeStats
from ._nats import NatsBridge
from ._redis import RedisBridge

__all__ = ["RedisBridge", "NatsBridge", "BridgeStats"]
