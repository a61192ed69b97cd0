"""The envelope's cryptographic core: per-message keys and the associated data.

Nothing here chooses keys, nonces or message ids: a message key comes from
the sender's key (v1) or the pair's key (v2) and a fresh random message id
(HKDF-SHA256), so the two fixed GCM nonces below are never used twice under
one key. The layouts are specified in ``docs/protocol.md``; :func:`message_aad`
builds the associated data of both versions.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from typing import Optional

from .._fast import memo
from .messages import Binding

__all__ = [
    "BODY_NONCE",
    "META_NONCE",
    "VERSION",
    "associated_data",
    "derive_message_key",
    "message_aad",
]

VERSION = "1"
VERSION_2 = "2"
#: GCM nonce of the body; unique because every message has its own key.
BODY_NONCE = bytes(12)
#: GCM nonce of the sealed content type (v1) or header fields (v2), under the
#: same per-message key.
META_NONCE = bytes(11) + b"\x01"

_AAD_LABELS = {VERSION: b"mscomm-sync envelope", VERSION_2: b"mscomm-sync envelope v2"}
_HKDF_SALT = bytes(32)
_HKDF_INFOS = {VERSION: b"mscomm-sync/1 message key", VERSION_2: b"mscomm-sync/2 message key"}
_PAIR_INFO = b"mscomm-sync/2 pair key"
_HEAD_LENGTHS = struct.Struct(">6I")
_TAIL_LENGTHS = struct.Struct(">5I")
#: Pairs of keys, services and methods whose associated-data head is cached.
_CACHED_HEADS = 1024


def derive_message_key(secret: bytes, message_id: bytes, version: str = VERSION) -> bytes:
    """Derive the AES-256 key of one message with HKDF-SHA256 (RFC 5869).

    IKM is the sender's 32-byte key (v1) or the pair's key (v2), the salt is
    empty (32 zero bytes), the info is ``b"mscomm-sync/1 message key"`` (v2:
    ``b"mscomm-sync/2 message key"``) followed by the 16-byte message id, and
    the output is 32 bytes. Because every message id is fresh, every message
    has its own key, and the fixed GCM nonces can never repeat under one key.
    """
    inner_state, outer_state = _expander(secret, _HKDF_INFOS[version])
    # RFC 5869 T(1) = HMAC(PRK, info || 0x01), with HMAC's two SHA-256
    # passes resumed from states keyed once per key (RFC 2104).
    inner = inner_state.copy()
    inner.update(message_id + b"\x01")
    outer = outer_state.copy()
    outer.update(inner.digest())
    return outer.digest()


@memo(1024)
def _expander(secret: bytes, info: bytes) -> tuple[hashlib._Hash, hashlib._Hash]:
    # HKDF-Extract depends only on the key, so it runs once per key, and so
    # does keying HMAC's inner and outer hashes with the PRK (which already
    # absorb the fixed label); each message then costs four SHA-256 blocks.
    prk = hmac.digest(_HKDF_SALT, secret, hashlib.sha256)
    block = prk.ljust(64, b"\0")
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in block))
    inner.update(info)
    outer = hashlib.sha256(bytes(b ^ 0x5C for b in block))
    return inner, outer


def message_aad(version: str, kid: str, binding: Binding, timestamp: str, message_id: str) -> bytes:
    """Return the associated data that binds a message's metadata.

    The layout is the label ``mscomm-sync envelope`` (v2: ``mscomm-sync
    envelope v2``), then eleven 32-bit big-endian byte lengths, then the
    eleven UTF-8 fields themselves: version, key id, direction, sender,
    recipient, method, target, timestamp, message id, status (empty for
    requests) and the answered request's id (empty for requests). In v2 the
    key id field is the sender's key id, ``-``, and the recipient's (33
    characters), which names the pair.

    The first six fields repeat from one call to the next (they name the
    keys, the two services and the method), so their lengths and bytes are
    cached (see :func:`mscomm_sync._fast.memo`); the target and the last four
    are encoded for each message. The target is not part of the cached key:
    a forger chooses it, and its length, before any tag is checked.
    """
    head_lengths, head = _aad_head(
        version, kid, binding.direction, binding.sender, binding.recipient, binding.method
    )
    target, status, reply_to = binding.target, binding.status, binding.reply_to
    tail = target + timestamp + message_id + status + reply_to
    encoded = tail.encode("utf-8")
    if len(encoded) == len(tail):  # all ASCII: str lengths are byte lengths
        tail_lengths = _TAIL_LENGTHS.pack(
            len(target), len(timestamp), len(message_id), len(status), len(reply_to)
        )
    else:
        tail_lengths = _TAIL_LENGTHS.pack(
            *(len(f.encode("utf-8")) for f in (target, timestamp, message_id, status, reply_to))
        )
    return b"".join((head_lengths, tail_lengths, head, encoded))


@memo(_CACHED_HEADS)
def _aad_head(
    version: str, kid: str, direction: str, sender: str, recipient: str, method: str
) -> tuple[bytes, bytes]:
    # The label and the first six lengths, then the first six fields' bytes.
    # Each field has a checked form and a bounded length by the time a
    # message gets here (a seal's key id, a service name, a method).
    fields = [f.encode("utf-8") for f in (version, kid, direction, sender, recipient, method)]
    return _AAD_LABELS[version] + _HEAD_LENGTHS.pack(*map(len, fields)), b"".join(fields)


def derive_pair_key(
    shared: bytes, sender: tuple[str, bytes], recipient: tuple[str, bytes]
) -> bytes:
    """Derive the key a pair of services shares (v2) from their X25519 secret.

    HKDF-SHA256 with IKM the 32-byte X25519 shared secret, an empty salt (32
    zero bytes), and info ``b"mscomm-sync/2 pair key"`` followed by, for each
    of the two services in order of name, the 4-byte big-endian length and
    bytes of its name, then of its 32-byte public key. Either side computes
    the same key; no third service can.
    """
    info = bytearray(_PAIR_INFO)
    for name, public in sorted((sender, recipient)):
        encoded = name.encode("ascii")
        info += len(encoded).to_bytes(4, "big") + encoded
        info += len(public).to_bytes(4, "big") + public
    prk = hmac.digest(_HKDF_SALT, shared, hashlib.sha256)
    return hmac.digest(prk, bytes(info) + b"\x01", hashlib.sha256)


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
    """Return :func:`message_aad` for these fields, given by name (for tools and test vectors)."""
    binding = Binding._make(
        direction,
        sender,
        recipient,
        method,
        target,
        "" if status is None else str(status),
        reply_to,
    )
    return message_aad(VERSION, kid, binding, str(timestamp), message_id)
