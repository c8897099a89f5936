"""Message (what a consumer receives) and Offset (what a send returns)."""
from typing import TYPE_CHECKING, Any, Dict, NamedTuple, Optional, Union

from . import _array, _headers
from ._errors import MessageReleasedError
from ._fast import MessageBase, setup
from ._native import ffi, lib

if TYPE_CHECKING:
    from ._consumer import Consumer

# positions in a delivery record filled by the C core
_PARTITION = lib.SHMBUS_D_PARTITION
_OFFSET = lib.SHMBUS_D_OFFSET
_AT = lib.SHMBUS_D_VALUE_AT
_VLEN = lib.SHMBUS_D_VALUE_LEN
_KLEN = lib.SHMBUS_D_KEY_LEN
_HLEN = lib.SHMBUS_D_HEADERS_LEN
_TS = lib.SHMBUS_D_TIMESTAMP
_POS = lib.SHMBUS_D_POSITION
_KEYED = lib.SHMBUS_D_KEYED
_COUNT = lib.SHMBUS_D_DELIVERY_COUNT
_FLAGS = lib.SHMBUS_D_FLAGS
_LOST = lib.SHMBUS_D_LOST
_UNKEPT = lib.SHMBUS_DF_UNKEPT
# A flag of this process only, set in the delivery's flags when the message is
# acknowledged or nacked: its bytes are no longer held for it.
ACKED = 1 << 16


class Offset(NamedTuple):
    """Where a sent message landed.  ``offset`` is None for a message that went
    to a spill file (on_full="spill"): it gets its offset as it enters the ring."""

    partition: int
    offset: Optional[int]


class Message(MessageBase):
    """A message delivered to a consumer.

    Fields are decoded only when asked for.  ``view()`` is a zero-copy window onto
    the ring, valid until the consumer's next poll (which releases the message),
    or with ``ack="manual"`` until the message is acknowledged or nacked.
    ``value``, ``key`` and ``headers`` are copied out when accessed; reading them
    after the release still works while the ring has not reused the bytes, and
    raises :class:`MessageReleasedError` once it has.
    """

    # in the C base: _c the consumer, _f its list of delivery fields, _i where
    # this message's start; and ``value``, whose shortest path is in C
    __slots__ = ()

    _c: "Consumer"

    @property
    def topic(self) -> str:
        return self._c.topic

    @property
    def partition(self) -> int:
        return self._f[self._i + _PARTITION]

    @property
    def offset(self) -> int:
        return self._f[self._i + _OFFSET]

    @property
    def timestamp(self) -> int:
        """Nanoseconds since the epoch, stamped at send."""
        return self._f[self._i + _TS]

    @property
    def delivery_count(self) -> int:
        """1 on the first delivery; raised each time the message is delivered again
        (it stops at 4095)."""
        return self._f[self._i + _COUNT]

    @property
    def msg_id(self) -> Union[str, bytes, None]:
        """As given to ``send`` (str or bytes), or None."""
        if not self._f[self._i + _HLEN]:
            return None
        return self._raw_headers().get(_headers.MSG_ID)

    @property
    def lost_before(self) -> int:
        """Messages this group lost just before this one (an untethered reader that
        was lapped); 0 otherwise."""
        return self._f[self._i + _LOST]

    def _held(self) -> bool:
        """Whether the consumer still holds this message: with manual acks until it
        is acknowledged, otherwise until the next poll."""
        c, f, i = self._c, self._f, self._i
        if f[i + _FLAGS] & _UNKEPT:
            return False
        if c._manual:
            return not c._closing and not f[i + _FLAGS] & ACKED
        return f is c._flat and i >= c._held

    def _copy(self, start: int, length: int) -> bytes:
        f, i = self._f, self._i
        if self._c.closed and not self._held():
            raise MessageReleasedError("the consumer of this message is closed")
        at = f[i + _AT] + start
        data = self._c._maps[f[i + _PARTITION]][at:at + length]
        if not self._held() and not self._c._still_there(f[i + _PARTITION], f[i + _POS]):
            raise MessageReleasedError(
                f"message at offset {f[i + _OFFSET]} of partition {f[i + _PARTITION]} was "
                "released and its bytes reused; copy what you keep before the next poll"
            )
        return data

    def _value_general(self) -> bytes:
        """``value``, the value copied out of the ring, on every path (the C getter
        takes the shortest: a held message with no flags)."""
        f, i, c = self._f, self._i, self._c
        if f is c._flat and i >= c._held and not f[i + _FLAGS]:
            at = f[i + _AT]
            return c._maps[f[i + _PARTITION]][at:at + f[i + _VLEN]]
        return self._copy(0, f[i + _VLEN])

    @property
    def key(self) -> Optional[bytes]:
        f, i = self._f, self._i
        return self._copy(f[i + _VLEN], f[i + _KLEN]) if f[i + _KEYED] else None

    @property
    def headers(self) -> Dict[str, Any]:
        h = self._raw_headers()
        h.pop(_headers.ARRAY, None)
        h.pop(_headers.MSG_ID, None)
        return h

    def _raw_headers(self) -> Dict[str, Any]:
        f, i = self._f, self._i
        n = f[i + _HLEN]
        return _headers.decode(self._copy(f[i + _VLEN] + f[i + _KLEN], n)) if n else {}

    def view(self) -> memoryview:
        """The value in place, without a copy; valid until the next poll (manual
        acks: until ack or nack).  For an untethered reader, or on a drop_oldest
        topic, where a producer may overwrite the ring at any time, a view of a
        checked copy."""
        if self._f[self._i + _FLAGS] & _UNKEPT and not self._c.closed:
            return memoryview(self.value)
        if not self._held():
            raise MessageReleasedError("view() of a message released by a later poll or an ack")
        f, i = self._f, self._i
        at = f[i + _AT]
        return self._c._views[f[i + _PARTITION]][at:at + f[i + _VLEN]]

    def array(self) -> Any:
        """The numpy array sent with ``send_array``: a zero-copy view while the
        message is held, a copy after it is released."""
        descr = self._raw_headers().get(_headers.ARRAY)
        if descr is None:
            raise TypeError("this message was not sent with send_array")
        return _array.restore(self.view() if self._held() else self.value, descr)

    def __repr__(self) -> str:
        return (f"Message(topic={self.topic!r}, partition={self.partition}, "
                f"offset={self.offset}, len={self._f[self._i + _VLEN]})")


setup(Message, Offset, tuple(int(ffi.cast("uintptr_t", ffi.addressof(lib, f)))
                             for f in ("shmbus_send_value", "shmbus_take_copy")),
      (lib.SHMBUS_DELIVERY_FIELDS, _PARTITION, _AT, _VLEN, _KLEN, _FLAGS))
