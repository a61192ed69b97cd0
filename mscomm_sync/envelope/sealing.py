"""Sealing one message, in either version, once :class:`~.envelope.Envelope` has chosen it.

The envelope decides *which* version and keys seal a message; the functions
here draw its id and timestamp, check what the sender passed, and assemble the
:class:`~.messages.Sealed` value with its headers. The cryptography itself is
in :mod:`.v1` and :mod:`.v2`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Callable, Optional

from ..errors import ConfigurationError
from ..keyring import Keyring
from ..trust.keys import PrivateKey, PublicKey
from .fields import FieldError, encode_section
from .headers import HEADER_ENCRYPTED, HEADER_SEAL, HEADER_SERVICE, SEALED_CONTENT_TYPE
from .limits import MAX_CONTENT_TYPE, MAX_SEALED_HEADERS
from .messages import Binding, Sealed
from .v1 import seal_v1
from .v2 import seal_v2

__all__ = ["content_type_bytes", "seal_with_v1", "seal_with_v2", "v1_problem"]

_Headers = Sequence[tuple[str, str]]


def new_message_id() -> bytes:
    """Draw a message id. The one place ids come from, so test vectors can pin it."""
    return os.urandom(16)


def seal_with_v1(
    keyring: Keyring,
    binding: Binding,
    clock: Callable[[], float],
    body: bytes,
    content_type: Optional[str],
) -> Sealed:
    """Seal under the sender's shared key (``binding.sender`` is this service)."""
    key = keyring.keys_for(binding.sender).sealing
    mid, ts = new_message_id(), str(int(clock()))
    seal, sealed = seal_v1(key, binding, ts, mid, body, content_type_bytes(content_type))
    return Sealed._make(_headers(binding.sender, seal), (sealed,), mid.hex(), int(ts), "1", key.kid)


def seal_with_v2(
    own: PrivateKey,
    peer: PublicKey,
    binding: Binding,
    clock: Callable[[], float],
    body: bytes,
    content_type: Optional[str],
    headers: Optional[_Headers],
) -> Sealed:
    """Seal under the pair key of ``own`` and ``peer``, with ``headers`` inside the seal."""
    content_type_bytes(content_type)  # the same bound as v1
    try:
        section = encode_section(content_type, headers or ())
    except FieldError as exc:
        raise ConfigurationError(f"cannot seal the headers: {exc}", reason="bad header") from None
    if len(section) > MAX_SEALED_HEADERS:
        # The receiver allows a sealed body this much over its plaintext: no more is sent.
        raise ConfigurationError(
            f"the headers to seal take {len(section)} bytes, more than {MAX_SEALED_HEADERS}",
            reason="headers too large",
        )
    mid, ts = new_message_id(), str(int(clock()))
    try:
        seal, pair, chunks = seal_v2(own, peer, binding, ts, mid, body, section)
    except ValueError:
        # X25519 refuses a low-order point (the exchange would give all zeros): such a
        # "public key" in the trust material could only come from a mistake or an attacker.
        raise ConfigurationError(
            f"the public key {peer.kid} trusted for {binding.recipient!r} cannot be used"
            " (X25519 refuses it: a low-order point); replace it in the trust file",
            reason="unusable public key",
        ) from None
    return Sealed._make(_headers(binding.sender, seal), chunks, mid.hex(), int(ts), "2", pair)


def v1_problem(keyring: Keyring, service: str, recipient: str) -> Optional[str]:
    """Return why v1 cannot seal from ``service`` to ``recipient`` (both keys are needed)."""
    for name in (service, recipient):
        try:
            keyring.keys_for(name)
        except ConfigurationError as exc:
            return f"for protocol v1, {exc.variable or 'a key'} is {exc.reason}"
    return None


def content_type_bytes(content_type: Optional[str]) -> bytes:
    """The plaintext ``Content-Type`` as sealed; longer than the bound is an error."""
    ct_plain = content_type.encode("utf-8") if content_type else b""
    if len(ct_plain) > MAX_CONTENT_TYPE:
        raise ConfigurationError(
            f"content type longer than {MAX_CONTENT_TYPE} bytes", reason="invalid content type"
        )
    return ct_plain


def _headers(service: str, seal: str) -> dict[str, str]:
    return {
        HEADER_ENCRYPTED: "true",
        HEADER_SERVICE: service,
        HEADER_SEAL: seal,
        "Content-Type": SEALED_CONTENT_TYPE,
    }
