"""The envelope's cryptographic core: per-message keys and associated data.

Nothing here chooses keys, nonces or message ids: a message key comes from
the sender's key and a fresh random message id (HKDF-SHA256), so the two fixed
GCM nonces below are never used twice under one key. The layouts are
specified in ``docs/protocol.md``.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import struct
from typing import Optional

__all__ = [
    "BODY_NONCE",
    "META_NONCE",
    "VERSION",
    "aad_of",
    "associated_data",
    "derive_message_key",
    "message_aad",
]

VERSION = "1"
#: GCM nonce of the body; unique because every message has its own key.
BODY_NONCE = bytes(12)
#: GCM nonce of the sealed content type, under the same per-message key.
META_NONCE = bytes(11) + b"\x01"

_AAD_LABEL = b"mscomm-sync envelope"
_HKDF_SALT = bytes(32)
_HKDF_INFO = b"mscomm-sync/1 message key"
_AAD_LENGTHS = struct.Struct(">11I")
_HEAD_LENGTHS = struct.Struct(">7I")
_TAIL_LENGTHS = struct.Struct(">4I")
#: Longer targets bypass the associated-data cache (it holds at most 1,024 heads).
_MAX_CACHED_TARGET = 512


def derive_message_key(secret: bytes, message_id: bytes) -> bytes:
    """Derive the AES-256 key of one message with HKDF-SHA256 (RFC 5869).

    IKM is the sender's 32-byte key, the salt is empty (32 zero bytes), the
    info is ``b"mscomm-sync/1 message key"`` followed by the 16-byte message
    id, and the output is 32 bytes. Because every message id is fresh, every
    message has its own key, and the fixed GCM nonces can never repeat under
    one key.
    """
    inner_state, outer_state = _expander(secret)
    # RFC 5869 T(1) = HMAC(PRK, info || 0x01), with HMAC's two SHA-256
    # passes resumed from states keyed once per key (RFC 2104).
    inner = inner_state.copy()
    inner.update(message_id + b"\x01")
    outer = outer_state.copy()
    outer.update(inner.digest())
    return outer.digest()


@functools.lru_cache(maxsize=1024)
def _expander(secret: bytes) -> tuple[hashlib._Hash, hashlib._Hash]:
    # HKDF-Extract depends only on the key, so it runs once per key, and so
    # does keying HMAC's inner and outer hashes with the PRK (which already
    # absorb the fixed label); each message then costs four SHA-256 blocks.
    prk = hmac.digest(_HKDF_SALT, secret, hashlib.sha256)
    block = prk.ljust(64, b"\0")
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in block))
    inner.update(_HKDF_INFO)
    outer = hashlib.sha256(bytes(b ^ 0x5C for b in block))
    return inner, outer


def associated_data(
    *,
    kid: str,
    direction: str,
    sender: str,
    recipient: str,
    method: str,
    target: str,
    timestamp: int,
    message_id: str,
    status: Optional[int] = None,
    reply_to: str = "",
) -> bytes:
    """Return the associated data that binds a message's metadata.

    The layout is the label ``mscomm-sync envelope``, then eleven 32-bit
    big-endian byte lengths, then the eleven UTF-8 fields themselves: version,
    key id, direction, sender, recipient, method, target, timestamp, message
    id, status (empty for requests) and the answered request's id (empty for
    requests).
    """
    fields = (
        VERSION,
        kid,
        direction,
        sender,
        recipient,
        method,
        target,
        str(timestamp),
        message_id,
        "" if status is None else str(status),
        reply_to,
    )
    return aad_of(fields)


def aad_of(fields: tuple[str, ...]) -> bytes:
    """Return the associated data of ``fields``, the eleven that :func:`associated_data` lists.

    The envelope calls it directly, with the timestamp and status already text.
    """
    joined = "".join(fields).encode("utf-8")
    if len(joined) == sum(map(len, fields)):  # all ASCII: str lengths are byte lengths
        lengths = _AAD_LENGTHS.pack(*map(len, fields))
    else:
        lengths = _AAD_LENGTHS.pack(*(len(f.encode("utf-8")) for f in fields))
    return _AAD_LABEL + lengths + joined


def message_aad(
    version: str,
    kid: str,
    direction: str,
    sender: str,
    recipient: str,
    method: str,
    target: str,
    timestamp: str,
    message_id: str,
    status: str,
    reply_to: str,
) -> bytes:
    """Return :func:`aad_of` of these eleven fields, the same bytes, computed faster.

    The envelope's hot path: the first seven fields repeat from one call of a
    route to the next, so their lengths and bytes come from a small cache
    (1,024 routes, targets of at most 512 characters, so at most about 1 MB
    even when forged requests fill it) and only the last four are encoded for
    each message.
    """
    if len(target) <= _MAX_CACHED_TARGET:
        head_lengths, head = _aad_head(version, kid, direction, sender, recipient, method, target)
    else:  # a forger reaches this before any tag check: keep long targets out of the cache
        head_lengths, head = _aad_head.__wrapped__(
            version, kid, direction, sender, recipient, method, target
        )
    tail = timestamp + message_id + status + reply_to
    encoded = tail.encode("utf-8")
    if len(encoded) == len(tail):  # all ASCII: str lengths are byte lengths
        tail_lengths = _TAIL_LENGTHS.pack(
            len(timestamp), len(message_id), len(status), len(reply_to)
        )
    else:
        tail_lengths = _TAIL_LENGTHS.pack(
            *(len(f.encode("utf-8")) for f in (timestamp, message_id, status, reply_to))
        )
    return b"".join((head_lengths, tail_lengths, head, encoded))


@functools.lru_cache(maxsize=1024)
def _aad_head(
    version: str, kid: str, direction: str, sender: str, recipient: str, method: str, target: str
) -> tuple[bytes, bytes]:
    # The label and the first seven lengths, then the first seven fields' bytes.
    fields = [
        f.encode("utf-8") for f in (version, kid, direction, sender, recipient, method, target)
    ]
    return _AAD_LABEL + _HEAD_LENGTHS.pack(*map(len, fields)), b"".join(fields)
