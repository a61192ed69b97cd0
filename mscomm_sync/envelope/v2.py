"""Protocol v2: a message sealed under the key only its sender and recipient share.

Each service has its own X25519 key pair; the pair key of two services comes
from their static-static X25519 secret (see ``derive_pair_key``), computed
once per pair and cached, so a third service, whatever keys it holds, can
forge neither side. Each message then has its own key from the pair key and
its id, as in v1, and seals two parts under one associated data: the header
fields (content type first, then every end-to-end header) and the body.

The sealed body is ``varint(len(H)) || H || C``: ``H`` the sealed field
section (nonce ``0..01``), ``C`` the sealed body (nonce ``0..00``). It is
produced as chunks, so a large body is never copied to put ``H`` before it.
"""

from __future__ import annotations

from typing import Optional, Union

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .._fast import memo
from ..trust.keys import PrivateKey, PublicKey
from .crypto import (
    BODY_NONCE,
    META_NONCE,
    VERSION_2,
    derive_message_key,
    derive_pair_key,
    message_aad,
)
from .fields import FieldError, decode_section, decode_varint, encode_section, encode_varint
from .headers import SealFields, format_seal
from .messages import Binding

__all__ = ["open_v2", "pair_key", "seal_v2"]

_Body = Union[bytes, bytearray, memoryview]
_TAG = 16


@memo(1024)
def pair_key(own: PrivateKey, own_name: str, peer: PublicKey, peer_name: str) -> bytes:
    """Return the key ``own_name`` and ``peer_name`` share, computed once per pair of keys.

    Raises:
        ValueError: the peer's public key is a low-order point (refused).
    """
    shared = own.exchange(peer)
    return derive_pair_key(shared, (own_name, own.public.raw), (peer_name, peer.raw))


def seal_v2(
    own: PrivateKey,
    peer: PublicKey,
    binding: Binding,
    ts: str,
    mid: bytes,
    body: bytes,
    section: bytes,
) -> tuple[str, str, tuple[bytes, bytes]]:
    """Return the seal header's value, the pair and the chunks of the sealed body.

    ``section`` is the field section (:func:`~.fields.encode_section`).
    """
    mid_hex = mid.hex()
    pair = f"{own.kid}-{peer.kid}"
    aad = message_aad(VERSION_2, pair, binding, ts, mid_hex)
    secret = pair_key(own, binding.sender, peer, binding.recipient)
    aead = AESGCM(derive_message_key(secret, mid, VERSION_2))
    head = aead.encrypt(META_NONCE, section, aad)
    chunks = (encode_varint(len(head)) + head, aead.encrypt(BODY_NONCE, body, aad))
    return format_seal(VERSION_2, pair, ts, mid_hex, ""), pair, chunks


def open_v2(
    own: PrivateKey,
    peer: PublicKey,
    binding: Binding,
    fields: SealFields,
    body: _Body,
) -> tuple[Optional[str], list[tuple[str, str]], bytes]:
    """Return the content type, the other header fields and the plaintext of a v2 message.

    Raises:
        cryptography.exceptions.InvalidTag: it does not verify.
        FieldError: its layout or its sealed fields are malformed.
    """
    view = memoryview(body)
    length, offset = decode_varint(view, 0)
    if length < _TAG or offset + length > len(view) - _TAG:
        raise FieldError("the sealed header fields run past the body")
    aad = message_aad(VERSION_2, fields.kid, binding, fields.timestamp, fields.message_id)
    secret = pair_key(own, binding.recipient, peer, binding.sender)
    aead = AESGCM(derive_message_key(secret, bytes.fromhex(fields.message_id), VERSION_2))
    section = aead.decrypt(META_NONCE, view[offset : offset + length], aad)
    plaintext = aead.decrypt(BODY_NONCE, view[offset + length :], aad)
    content_type, headers = decode_section(section)
    return content_type, headers, plaintext


def section_of(content_type: Optional[str], headers: Optional[list[tuple[str, str]]]) -> bytes:
    """Return the field section of a message's content type and end-to-end headers."""
    return encode_section(content_type, headers or ())
