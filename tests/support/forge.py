"""An attacker's sealer: protocol v1 written from ``docs/protocol.md`` with bare ``cryptography``.

It seals whatever it is told to (any sender name, any key, any fields), with
none of the package's checks, so tests can show that what the package
refuses is refused on the wire and not only by the package's own sealer.
"""

from __future__ import annotations

import hashlib
import os
import struct
import time
from typing import Optional

import attrs
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


def key_id(secret: bytes) -> str:
    """The key id of a 32-byte key, per the spec."""
    return hashlib.sha256(b"mscomm-sync key id v1\x00" + secret).hexdigest()[:16]


@attrs.frozen
class Forged:
    """A forged sealed message: its headers and body, and its message id."""

    headers: dict[str, str]
    body: bytes
    message_id: str


def forge(
    *,
    secret: bytes,
    sender: str,
    recipient: str,
    method: str,
    target: str,
    body: bytes = b"",
    content_type: str = "",
    direction: str = "request",
    status: str = "",
    reply_to: str = "",
    timestamp: Optional[int] = None,
) -> Forged:
    """Seal a v1 message exactly as the spec says, under ``secret``, claiming ``sender``."""
    kid = key_id(secret)
    ts = str(int(time.time()) if timestamp is None else timestamp)
    mid = os.urandom(16)
    fields = [
        "1",
        kid,
        direction,
        sender,
        recipient,
        method,
        target,
        ts,
        mid.hex(),
        status,
        reply_to,
    ]
    encoded = [f.encode("utf-8") for f in fields]
    aad = (
        b"mscomm-sync envelope"
        + struct.pack(">11I", *(len(f) for f in encoded))
        + b"".join(encoded)
    )
    message_key = HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=bytes(32),
        info=b"mscomm-sync/1 message key" + mid,
    ).derive(secret)
    aead = AESGCM(message_key)
    sealed_ct = aead.encrypt(bytes(11) + b"\x01", content_type.encode(), aad).hex()
    headers = {
        "X-Encrypted-Payload": "true",
        "X-Encryption-Service": sender,
        "X-Mscomm-Seal": f"v=1;kid={kid};ts={ts};id={mid.hex()};ct={sealed_ct}",
        "Content-Type": "application/vnd.mscomm.sealed",
    }
    return Forged(headers=headers, body=aead.encrypt(bytes(12), body, aad), message_id=mid.hex())


# -- protocol v2 ----------------------------------------------------------------------


def key_id_v2(public: bytes) -> str:
    """The key id of a 32-byte X25519 public key, per the spec."""
    return hashlib.sha256(b"mscomm-sync key id v2\x00" + public).hexdigest()[:16]


def varint(value: int) -> bytes:
    """A QUIC variable-length integer (RFC 9000, section 16)."""
    if value < 0x40:
        return bytes((value,))
    if value < 0x4000:
        return (value | 0x4000).to_bytes(2, "big")
    return (value | 0x8000_0000).to_bytes(4, "big")


def field_section(fields: list[tuple[str, str]]) -> bytes:
    """A field section: its length, then each name and value with its length."""
    body = b"".join(
        varint(len(n.encode())) + n.encode() + varint(len(v.encode())) + v.encode()
        for n, v in fields
    )
    return varint(len(body)) + body


def pair_key_v2(shared: bytes, one: tuple[str, bytes], other: tuple[str, bytes]) -> bytes:
    """The pair key of two services from their X25519 secret, per the spec."""
    info = b"mscomm-sync/2 pair key"
    for name, public in sorted((one, other)):
        info += len(name).to_bytes(4, "big") + name.encode() + len(public).to_bytes(4, "big")
        info += public
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=bytes(32), info=info).derive(shared)


def forge_v2(
    *,
    private: bytes,
    peer_public: bytes,
    sender: str,
    recipient: str,
    method: str,
    target: str,
    body: bytes = b"",
    fields: Optional[list[tuple[str, str]]] = None,
    direction: str = "request",
    status: str = "",
    reply_to: str = "",
    timestamp: Optional[int] = None,
    sender_kid: Optional[str] = None,
    recipient_kid: Optional[str] = None,
) -> Forged:
    """Seal a v2 message as the spec says, with ``private``'s X25519 key, claiming ``sender``.

    ``sender_kid`` and ``recipient_kid`` default to the ids of the keys used;
    an attacker may claim others.
    """
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    own = X25519PrivateKey.from_private_bytes(private)
    own_public = own.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    shared = own.exchange(X25519PublicKey.from_public_bytes(peer_public))
    secret = pair_key_v2(shared, (sender, own_public), (recipient, peer_public))
    skid = sender_kid or key_id_v2(own_public)
    rkid = recipient_kid or key_id_v2(peer_public)
    ts = str(int(time.time()) if timestamp is None else timestamp)
    mid = os.urandom(16)
    aad_fields = [
        "2", f"{skid}-{rkid}", direction, sender, recipient, method, target, ts, mid.hex(),
        status, reply_to,
    ]  # fmt: skip
    encoded = [f.encode("utf-8") for f in aad_fields]
    aad = (
        b"mscomm-sync envelope v2"
        + struct.pack(">11I", *(len(f) for f in encoded))
        + b"".join(encoded)
    )
    key = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=bytes(32),
        info=b"mscomm-sync/2 message key" + mid,
    ).derive(secret)  # fmt: skip
    aead = AESGCM(key)
    head = aead.encrypt(bytes(11) + b"\x01", field_section(fields or []), aad)
    sealed = varint(len(head)) + head + aead.encrypt(bytes(12), body, aad)
    headers = {
        "X-Encrypted-Payload": "true",
        "X-Encryption-Service": sender,
        "X-Mscomm-Seal": f"v=2;skid={skid};rkid={rkid};ts={ts};id={mid.hex()}",
        "Content-Type": "application/vnd.mscomm.sealed",
    }
    return Forged(headers=headers, body=sealed, message_id=mid.hex())
