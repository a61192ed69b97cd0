"""Protocol v1: a message sealed under its sender's own (shared) key.

The sender's 32-byte key, shared with everyone who talks to it, derives the
message key; the sealed content type travels in the seal header's ``ct``
field and the body is the ciphertext. Kept for fleets that have not moved to
v2 (``docs/protocol.md`` specifies both, and ``docs/security.md`` says what v1
does not give).
"""

from __future__ import annotations

from typing import Optional, Union

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..keyring import Key
from .crypto import BODY_NONCE, META_NONCE, VERSION, derive_message_key, message_aad
from .headers import SealFields, format_seal
from .messages import Binding

__all__ = ["open_v1", "seal_v1"]

_Body = Union[bytes, bytearray, memoryview]


def seal_v1(
    key: Key, binding: Binding, ts: str, mid: bytes, body: bytes, ct_plain: bytes
) -> tuple[str, bytes]:
    """Return the seal header's value and the sealed body of one message."""
    mid_hex = mid.hex()
    aad = message_aad(VERSION, key.kid, binding, ts, mid_hex)
    aead = AESGCM(derive_message_key(key.secret, mid))
    sealed_ct = aead.encrypt(META_NONCE, ct_plain, aad).hex()
    return format_seal(VERSION, key.kid, ts, mid_hex, sealed_ct), aead.encrypt(
        BODY_NONCE, body, aad
    )


def open_v1(
    key: Key, binding: Binding, fields: SealFields, body: _Body
) -> tuple[Optional[str], bytes]:
    """Return the content type and plaintext of a v1 message.

    Raises:
        cryptography.exceptions.InvalidTag: it does not verify.
        UnicodeDecodeError: the content type is not UTF-8 (it verified, so the
            sender sealed it so).
    """
    aad = message_aad(VERSION, fields.kid, binding, fields.timestamp, fields.message_id)
    aead = AESGCM(derive_message_key(key.secret, bytes.fromhex(fields.message_id)))
    # Lower-case hex of even length (parse_seal): one spelling.
    content_type = aead.decrypt(META_NONCE, bytes.fromhex(fields.sealed_content_type), aad)
    plaintext = aead.decrypt(BODY_NONCE, body, aad)
    return content_type.decode("utf-8") or None, plaintext
