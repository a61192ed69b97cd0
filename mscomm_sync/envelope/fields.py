"""Protocol v2's sealed header fields: a compact, length-prefixed list of name-value pairs.

Modelled on Binary HTTP's known-length field sections (RFC 9292, section 3.6):
every length is a QUIC variable-length integer (RFC 9000, section 16), the
section is its total length followed by, for each field, the length of the
name, the name, the length of the value and the value. Names are lower-case
tokens (RFC 9110, section 5.6.2); values are visible ASCII, space and tab,
without leading or trailing white space (RFC 9110, section 5.5). The order
of fields, repeats included, is kept.

Which headers travel sealed: every end-to-end header of the request or
answer, that is everything except the hop-by-hop headers, the ones that
describe the transport of the sealed body, and the envelope's own.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Optional, Union

from .._fast import memo

__all__ = [
    "NOT_SEALED",
    "FieldError",
    "decode_section",
    "decode_varint",
    "encode_section",
    "encode_varint",
    "sealable",
]

#: Headers that never travel inside the seal (lower case): hop-by-hop ones,
#: those that describe the sealed body's transport, and the envelope's.
NOT_SEALED = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
        "content-encoding",
        "accept-encoding",
        "x-encrypted-payload",
        "x-encryption-service",
        "x-mscomm-seal",
        "x-mscomm-sealed-body",
    }
)

_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9a-z-]+\Z")
_VALUE = re.compile(r"(?:[\x21-\x7e](?:[\x20-\x7e\t]*[\x21-\x7e])?)?\Z")
_Buffer = Union[bytes, bytearray, memoryview]


class FieldError(ValueError):
    """A field section, or a field in it, is malformed (the message says which part)."""


def encode_varint(value: int) -> bytes:
    """Return ``value`` (0 to 2**62 - 1) as a QUIC variable-length integer."""
    if value < 0x40:
        return bytes((value,))
    if value < 0x4000:
        return (value | 0x4000).to_bytes(2, "big")
    if value < 0x4000_0000:
        return (value | 0x8000_0000).to_bytes(4, "big")
    if value < 0x4000_0000_0000_0000:
        return (value | 0xC000_0000_0000_0000).to_bytes(8, "big")
    raise FieldError("a length too large for a variable-length integer")


def decode_varint(data: _Buffer, offset: int) -> tuple[int, int]:
    """Return the QUIC variable-length integer at ``offset`` and the offset after it.

    Raises:
        FieldError: the data ends inside it.
    """
    if offset >= len(data):
        raise FieldError("truncated length")
    first = data[offset]
    size = 1 << (first >> 6)
    if offset + size > len(data):
        raise FieldError("truncated length")
    value = first & 0x3F
    for i in range(1, size):
        value = (value << 8) | data[offset + i]
    return value, offset + size


def sealable(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """Return the end-to-end ones of ``headers``, names lower-cased, in order."""
    return [(n.lower(), v) for n, v in headers if n.lower() not in NOT_SEALED]


def encode_section(content_type: Optional[str], headers: Iterable[tuple[str, str]]) -> bytes:
    """Return the field section of ``content-type`` (first, if any) and ``headers``.

    Raises:
        FieldError: a name is not a lower-case token, or a value has characters
            a header cannot carry.
    """
    parts: list[bytes] = []
    if content_type:
        _field(parts, "content-type", content_type)
    for name, value in headers:
        if name == "content-type":
            continue  # the content type travels once, first
        _field(parts, name, value)
    section = b"".join(parts)
    return encode_varint(len(section)) + section


@memo(1024)
def _name_bytes(name: str) -> Optional[bytes]:
    """A valid name with its length prefix, or ``None``: names repeat, so each is checked once."""
    if not _TOKEN.match(name):
        return None
    raw = name.encode("ascii")
    return encode_varint(len(raw)) + raw


def _field(parts: list[bytes], name: str, value: str) -> None:
    prefixed = _name_bytes(name)
    if prefixed is None:
        raise FieldError(f"header name {name[:64]!r} is not a lower-case token")
    if not _VALUE.match(value):
        raise FieldError(f"the value of header {name!r} has characters a header cannot carry")
    raw = value.encode("ascii")
    parts.append(prefixed)
    parts.append(encode_varint(len(raw)))
    parts.append(raw)


def decode_section(data: _Buffer) -> tuple[Optional[str], list[tuple[str, str]]]:
    """Return the content type and the other fields of a whole field section.

    Raises:
        FieldError: it is truncated, has bytes past its end, or holds a
            malformed field.
    """
    data = bytes(data)  # small (the envelope bounds it): slicing bytes is cheapest
    length, offset = decode_varint(data, 0)
    end = offset + length
    if end != len(data):
        raise FieldError("the field section's length does not match")
    content_type: Optional[str] = None
    fields: list[tuple[str, str]] = []
    while offset < end:
        name, offset = _text(data, offset, end)
        value, offset = _text(data, offset, end)
        if _name_bytes(name) is None or not _VALUE.match(value):
            raise FieldError("a malformed field")
        if name == "content-type":
            if fields or content_type is not None:
                raise FieldError("content-type must be the first field, and only once")
            content_type = value
        else:
            fields.append((name, value))
    return content_type, fields


def _text(data: bytes, offset: int, end: int) -> tuple[str, int]:
    """The length-prefixed ASCII text at ``offset``, and the offset after it."""
    if offset >= end:
        raise FieldError("truncated length")
    size = data[offset]
    if size < 0x40:  # the common one-byte length, read in line
        offset += 1
    else:
        size, offset = decode_varint(data, offset)
    if offset + size > end:
        raise FieldError("a field runs past the section")
    try:
        return data[offset : offset + size].decode("ascii"), offset + size
    except UnicodeDecodeError:
        raise FieldError("a field that is not ASCII") from None
