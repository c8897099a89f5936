"""Columns: a batch of deliveries as numpy arrays, with no Python object per message."""
from typing import TYPE_CHECKING, Any, List, Optional

import numpy as np

from ._errors import MessageReleasedError
from ._native import lib

if TYPE_CHECKING:
    from ._consumer import Consumer

_PARTITION = lib.SHMBUS_D_PARTITION
_OFFSET = lib.SHMBUS_D_OFFSET
_AT = lib.SHMBUS_D_VALUE_AT
_VLEN = lib.SHMBUS_D_VALUE_LEN
_TS = lib.SHMBUS_D_TIMESTAMP
_POS = lib.SHMBUS_D_POSITION
_COUNT = lib.SHMBUS_D_DELIVERY_COUNT
_FLAGS = lib.SHMBUS_D_FLAGS
_LOST = lib.SHMBUS_D_LOST
_UNKEPT = lib.SHMBUS_DF_UNKEPT


class Columns:
    """Messages from one :meth:`Consumer.poll_columns` call, as columns.

    ``partition``, ``offset``, ``timestamp``, ``delivery_count``, ``lost_before``,
    ``value_at`` and ``value_length`` are numpy arrays with one entry per message
    (read-only views of one copied block: they stay valid).  The values stay in
    the ring: ``buffer(p)`` is partition ``p``'s memory as a zero-copy uint8
    array, where message ``i``'s value is ``value_at[i]`` .. ``+ value_length[i]``;
    like ``Message.view()`` it is valid until the consumer's next poll.
    ``rows()`` copies equal-sized values out into one 2-D array, ``value(i)`` is
    one value as a zero-copy memoryview, and ``values()`` copies every value out
    as ``bytes`` (a Python object per message: the slow way).
    """

    __slots__ = ("_d", "_c", "_buffers")

    def __init__(self, deliveries: np.ndarray, consumer: "Consumer"):
        deliveries.flags.writeable = False
        self._d = deliveries
        self._c = consumer
        self._buffers: dict = {}

    def __len__(self) -> int:
        return len(self._d)

    def __repr__(self) -> str:
        return f"Columns(topic={self._c.topic!r}, messages={len(self._d)})"

    @property
    def partition(self) -> np.ndarray:
        return self._d[:, _PARTITION]

    @property
    def offset(self) -> np.ndarray:
        return self._d[:, _OFFSET]

    @property
    def timestamp(self) -> np.ndarray:
        """Nanoseconds since the epoch, stamped at send."""
        return self._d[:, _TS].view(np.int64)

    @property
    def delivery_count(self) -> np.ndarray:
        return self._d[:, _COUNT]

    @property
    def lost_before(self) -> np.ndarray:
        return self._d[:, _LOST]

    @property
    def value_at(self) -> np.ndarray:
        """Where each value starts in ``buffer(partition[i])``."""
        return self._d[:, _AT]

    @property
    def value_length(self) -> np.ndarray:
        return self._d[:, _VLEN]

    def buffer(self, partition: int = 0) -> np.ndarray:
        """Partition ``partition``'s ring as a read-only uint8 array, without a copy.
        Valid until the consumer's next poll."""
        self._check_held()
        b = self._buffers.get(partition)
        if b is None:
            b = self._buffers[partition] = np.frombuffer(self._c._views[partition], np.uint8)
        return b

    def value(self, i: int) -> memoryview:
        """Message ``i``'s value in place (valid until the next poll)."""
        if self._d[i, _FLAGS] & _UNKEPT:
            return memoryview(self._checked(i))
        self._check_held()
        at = int(self._d[i, _AT])
        return self._c._views[int(self._d[i, _PARTITION])][at:at + int(self._d[i, _VLEN])]

    def values(self) -> List[bytes]:
        """Every value copied out as ``bytes``."""
        return [bytes(self.value(i)) for i in range(len(self._d))]

    def rows(self, dtype: Optional[Any] = None) -> np.ndarray:
        """The values, all of one length L, copied into a new (n, L) uint8 array,
        or viewed as ``dtype`` (an (n, L // itemsize) array, or (n,) when L is the
        itemsize of a structured dtype).  Raises ValueError for values of
        different lengths."""
        d = self._d
        n = len(d)
        length = int(d[0, _VLEN]) if n else 0
        if n and (d[:, _VLEN] != length).any():
            raise ValueError("rows() needs values of one length; use value(i) or values()")
        out = np.empty((n, length), np.uint8)
        if n:
            self._gather(out, length)
        if dtype is None:
            return out
        out = out.view(dtype)
        return out.reshape(n) if out.shape[1:] == (1,) else out

    def _gather(self, out: np.ndarray, length: int) -> None:
        """Copies runs of equally spaced values (the usual case: one or two runs
        per partition, split where the ring wraps) with one strided copy each."""
        d = self._d
        at = d[:, _AT].astype(np.int64)
        parts = d[:, _PARTITION]
        n = len(d)
        step = np.diff(at)
        usual = int(step[len(step) // 2]) if n > 1 else 0
        cut = np.ones(n, bool)  # True where a run starts: a new partition, or another spacing
        if usual > 0:
            cut[1:] = (parts[1:] != parts[:-1]) | (step != usual)
        starts = np.flatnonzero(cut).tolist() + [n]
        for a, b in zip(starts, starts[1:]):
            buf = self.buffer(int(parts[a]))
            first = int(at[a])
            if b - a == 1:
                out[a] = buf[first:first + length]
                continue
            out[a:b] = np.lib.stride_tricks.as_strided(
                buf[first:], shape=(b - a, length), strides=(usual, 1), writeable=False)
        unkept = np.flatnonzero(d[:, _FLAGS] & _UNKEPT)
        for i in unkept.tolist():  # a producer may have overwritten them meanwhile
            if not self._c._still_there(int(parts[i]), int(d[i, _POS])):
                raise self._released(i)

    def _checked(self, i: int) -> bytes:
        d = self._d
        at = int(d[i, _AT])
        data = self._c._maps[int(d[i, _PARTITION])][at:at + int(d[i, _VLEN])]
        if not self._c._still_there(int(d[i, _PARTITION]), int(d[i, _POS])):
            raise self._released(i)
        return data

    def _released(self, i: int) -> MessageReleasedError:
        return MessageReleasedError(
            f"message at offset {int(self._d[i, _OFFSET])} of partition "
            f"{int(self._d[i, _PARTITION])} was overwritten before it was copied")

    def _check_held(self) -> None:
        if self._c._columns is not self:
            raise MessageReleasedError("the values of a Columns batch are released by the next poll")
