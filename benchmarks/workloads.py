"""What the suite measures: the workloads, the stamp every message carries, and the
loops that child processes run (the same loops for every peer).

A stamp is a little-endian uint64, ``producer index << 48 | sequence number``, in the
first and the last 8 bytes of each message; receivers check both.
"""
import struct
import time
from dataclasses import dataclass, replace
from typing import Any, Dict, List

KiB, MiB = 1024, 1024 * 1024
U64 = struct.Struct("<Q")
PRODUCER_SHIFT = 48


@dataclass(frozen=True)
class Workload:
    name: str                 # e.g. "1to1", "numpy", "fanout", "group", "4to1", "batch", "columnar", "ping"
    kind: str                 # bytes | numpy | batch | columnar | ping
    size: int                 # bytes per message
    count: int                # messages per producer
    producers: int = 1
    consumers: int = 1
    pattern: str = "share"    # each: every consumer gets every message | share: one consumer each
    batch: int = 0            # messages per send_many / recv_many
    spin: bool = False        # ping: the receiver busy-waits
    timeout: float = 30.0     # seconds a receive waits before giving up

    @property
    def depth(self) -> int:
        """Queue depth in messages: min(1024 messages, 64 MiB), at least 2."""
        return max(2, min(1024, 64 * MiB // self.size))

    @property
    def expected(self) -> int:
        """Deliveries the consumers must report between them."""
        sent = self.count * self.producers
        return sent * self.consumers if self.pattern == "each" else sent

    def with_count(self, count: int) -> "Workload":
        return replace(self, count=count)


def stamp(producer: int, seq: int) -> int:
    return producer << PRODUCER_SHIFT | seq


def payload_maker(size: int):
    """A function of a stamp that returns a fresh ``bytes`` of ``size`` bytes,
    stamped at both ends (one C call per message)."""
    pack = struct.Struct(f"<Q{size - 16}xQ").pack
    return lambda s: pack(s, s)


def stamps_of(size: int):
    """A function of a buffer that returns its (first, last) stamps."""
    unpack_from = struct.Struct(f"<Q{size - 16}xQ").unpack_from
    return unpack_from


class Tally:
    """What one receiver saw: deliveries, per-producer order, and the time of its
    first and last message (perf_counter, comparable across processes)."""

    def __init__(self, producers: int):
        self.next = [0] * producers     # next expected sequence number per producer
        self.got = 0
        self.bad = 0                    # torn or corrupt: first and last stamps differ
        self.out_of_order = 0
        self.seq_sum = 0                # sum of stamps: duplicates and losses show here
        self.t_first = None
        self.t_last = None

    def result(self) -> Dict[str, Any]:
        return {"got": self.got, "bad": self.bad, "out_of_order": self.out_of_order,
                "seq_sum": self.seq_sum, "t_first": self.t_first, "t_last": self.t_last}
