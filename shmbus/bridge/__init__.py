"""Bridges: a topic forwarded to or from a distributed log, at least once, keys
and headers kept.  ``RedisBridge`` (Redis Streams, redis-py); install with
``pip install 'shmbus[bridge]'``."""
from ._redis import RedisBridge
from ._common import BridgeStats

__all__ = ["RedisBridge", "BridgeStats"]
