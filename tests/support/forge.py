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
