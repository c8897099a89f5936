"""Message (what a consumer receives) and Offset (what a send returns)."""
from typing import TYPE_CHECKING, Any, Dict, NamedTuple, Optional

from . import _array, _headers
from ._errors import MessageReleasedError
from ._native import lib

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


class Offset(NamedTuple):
    """Where a sent message landed."""

    partition: int
    offset: int


class Message:
    """A message delivered to a consumer.

    Fields are decoded only when asked for.  ``view()`` is a zero-copy window onto
    the ring, valid until the consumer's next poll (which releases the message).
    ``value``, ``key`` and ``headers`` are copied out on first access; reading them
    after the release still works while the ring has not reused the bytes, and
    raises :class:`MessageReleasedError` once it has.
    """

    __slots__ = ("_c", "_d", "_gen", "_value", "_headers")

    _c: "Consumer"

    @property
    def topic(self) -> str:
        return self._c.topic

    @property
    def partition(self) -> int:
        return self._d[_PARTITION]

    @property
    def offset(self) -> int:
        return self._d[_OFFSET]

    @property
    def timestamp(self) -> int:
        """Nanoseconds since the epoch, stamped at send."""
        return self._d[_TS]

    @property
    def delivery_count(self) -> int:
        return 1

    @property
    def msg_id(self) -> Optional[bytes]:
        return None

    @property
    def lost_before(self) -> int:
        return 0

    def _copy(self, start: int, length: int) -> bytes:
        d = self._d
        at = d[_AT] + start
        data = self._c._maps[d[_PARTITION]][at:at + length]
        if self._gen != self._c._gen and not self._c._still_there(d[_PARTITION], d[_POS]):
            raise MessageReleasedError(
                f"message at offset {d[_OFFSET]} of partition {d[_PARTITION]} was released "
                "and its bytes reused; copy what you keep before the next poll"
            )
        return data

    @property
    def value(self) -> bytes:
        v = self._value
        if v is None:
            v = self._value = self._copy(0, self._d[_VLEN])
        return v

    @property
    def key(self) -> Optional[bytes]:
        n = self._d[_KLEN]
        return self._copy(self._d[_VLEN], n) if n else None

    @property
    def headers(self) -> Dict[str, Any]:
        h = self._headers
        if h is None:
            n = self._d[_HLEN]
            h = _headers.decode(self._copy(self._d[_VLEN] + self._d[_KLEN], n)) if n else {}
            h.pop(_headers.ARRAY, None)
            self._headers = h
        return dict(h)

    def _raw_headers(self) -> Dict[str, Any]:
        n = self._d[_HLEN]
        return _headers.decode(self._copy(self._d[_VLEN] + self._d[_KLEN], n)) if n else {}

    def view(self) -> memoryview:
        """The value in place, without a copy; valid until the next poll."""
        if self._gen != self._c._gen:
            raise MessageReleasedError("view() of a message released by a later poll")
        d = self._d
        return self._c._views[d[_PARTITION]][d[_AT]:d[_AT] + d[_VLEN]]

    def array(self) -> Any:
        """The numpy array sent with ``send_array``: a zero-copy view while the
        message is held, a copy after it is released."""
        descr = self._raw_headers().get(_headers.ARRAY)
        if descr is None:
            raise TypeError("this message was not sent with send_array")
        buffer = self.view() if self._gen == self._c._gen else self.value
        return _array.restore(buffer, descr)

    def __repr__(self) -> str:
        return (f"Message(topic={self.topic!r}, partition={self.partition}, "
                f"offset={self.offset}, len={self._d[_VLEN]})")
