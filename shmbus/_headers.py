"""Encoding of message headers: ``dict[str, str | bytes]`` to bytes and back.

Each entry: u16 name length, u8 kind (0 str, 1 bytes), u32 value length, the name
(UTF-8), the value.  Names beginning with ``shmbus.`` are reserved for the bus."""
import struct
from collections.abc import Mapping
from typing import Dict, Union

from ._errors import CorruptSegmentError

HeaderValue = Union[str, bytes]
_ENTRY = struct.Struct("<HBI")
ARRAY = "shmbus.array"  # dtype and shape of a send_array value
MSG_ID = "shmbus.msg_id"  # a send's msg_id, as given (str or bytes)
_MSG_ID_NAME = MSG_ID.encode()


def encode(headers: "Mapping[str, HeaderValue]") -> bytes:
    if type(headers) is not dict and not isinstance(headers, Mapping):
        raise TypeError(f"headers must be a dict, not {type(headers).__name__}")
    out = bytearray()
    for name, value in headers.items():
        if not isinstance(name, str):
            raise TypeError(f"header names must be str, not {type(name).__name__}")
        raw_name = name.encode()
        if isinstance(value, str):
            kind, raw = 0, value.encode()
        elif isinstance(value, (bytes, bytearray, memoryview)):
            kind, raw = 1, bytes(value)
        else:
            raise TypeError(f"header {name!r} must be str or bytes, not {type(value).__name__}")
        if len(raw_name) > 0xFFFF:
            raise TypeError(f"header name {name[:40]!r}... is too long")
        out += _ENTRY.pack(len(raw_name), kind, len(raw))
        out += raw_name
        out += raw
    return bytes(out)


def msg_id_entry(msg_id: Union[str, bytes]) -> bytes:
    """The entry of a send's msg_id (str or bytes, its kind kept), encoded."""
    kind, raw = (0, msg_id.encode()) if type(msg_id) is str else (1, msg_id)
    return _ENTRY.pack(len(_MSG_ID_NAME), kind, len(raw)) + _MSG_ID_NAME + raw


def decode(raw: bytes) -> Dict[str, HeaderValue]:
    headers: Dict[str, HeaderValue] = {}
    at = 0
    try:
        while at < len(raw):
            name_len, kind, value_len = _ENTRY.unpack_from(raw, at)
            at += _ENTRY.size
            name = raw[at:at + name_len].decode()
            at += name_len
            value = raw[at:at + value_len]
            at += value_len
            if at > len(raw) or kind > 1:
                raise ValueError
            headers[name] = value.decode() if kind == 0 else bytes(value)
    except (ValueError, struct.error, UnicodeDecodeError):
        raise CorruptSegmentError("message headers are malformed") from None
    return headers
