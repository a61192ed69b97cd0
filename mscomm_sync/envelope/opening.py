"""Opening one message: the checks in the order that costs an attacker most and us least.

1. :func:`read_envelope`: the form of the envelope, before any key is looked
   up (size, the sealed flag, the seal header, the version, the sender's name,
   the method);
2. :func:`v1_key` / :func:`v2_keys`: the keys it names, found or refused;
3. :func:`open_message`: freshness, then the one decryption, then the
   plaintext's size.

Each refusal goes through :func:`~.rejection.reject`: one opaque error, the
reason to this side's log. Recording the id in a replay store is the caller's
(:class:`~.envelope.Envelope`), after all of this has passed.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Optional, Union

from cryptography.exceptions import InvalidTag

from .._fast import memo
from ..errors import ConfigurationError
from ..keyring import Key, Keyring, validate_service_name
from ..trust.identity import Identity
from ..trust.keys import PrivateKey, PublicKey
from ..trust.store import TrustStore
from .fields import FieldError
from .headers import (
    HEADER_ENCRYPTED,
    HEADER_SEAL,
    HEADER_SERVICE,
    SealFields,
    bound_method,
    parse_seal,
    seal_version,
)
from .limits import SEALING_OVERHEAD, TAG_BYTES
from .messages import Binding, Opened
from .rejection import reject
from .v1 import open_v1
from .v2 import open_v2

__all__ = ["Keys", "is_service_name", "open_message", "read_envelope", "v1_key", "v2_keys"]

Body = Union[bytes, bytearray, memoryview]
#: What opens a message: the sender's shared key (v1), or this service's
#: private key and the sender's public key (v2).
Keys = Union[Key, tuple[PrivateKey, PublicKey]]


@memo(1024)
def is_service_name(name: str) -> bool:
    """Whether ``name`` is a valid service name (remembered: senders repeat)."""
    try:
        validate_service_name(name)
    except ConfigurationError:
        return False
    return True


def read_envelope(
    direction: str,
    headers: Mapping[str, str],
    body: Body,
    expected: Optional[str],
    versions: Collection[str],
    max_body_size: int,
    method: str,
) -> tuple[str, SealFields, str]:
    """Check what can be checked before any key is looked up.

    Returns the sender, the seal's fields and the method as bound (upper
    case). ``expected`` is the sender an answer must come from (``None`` for
    a request); ``method`` is the one the message arrived with.
    """
    sender = headers.get(HEADER_SERVICE)
    seal = headers.get(HEADER_SEAL) or ""
    fields = parse_seal(seal)
    if len(body) > max_body_size + SEALING_OVERHEAD:
        raise _early("body too large", fields, direction, sender)
    if headers.get(HEADER_ENCRYPTED) != "true":  # exactly; "TRUE" is not the protocol
        raise _early("not sealed", fields, direction, sender)
    if fields is None:
        version = seal_version(seal)
        reason = "malformed envelope" if version in ("v=1", "v=2") else "unsupported version"
        raise _early(reason, fields, direction, sender)
    if fields.version not in versions:
        raise _early(f"protocol v{fields.version} is not allowed here", fields, direction, sender)
    if sender is None:
        raise _early("malformed envelope", fields, direction, sender)
    if not is_service_name(sender):
        raise _early("malformed sender", fields, direction, sender)
    if expected is not None and sender != expected:
        raise _early("unexpected sender", fields, direction, sender)
    bound = bound_method(method)
    if bound is None:
        raise reject("malformed envelope", None, fields, sender=sender)
    return sender, fields, bound


def _early(
    reason: str, fields: Optional[SealFields], direction: str, sender: Optional[str]
) -> Exception:
    return reject(reason, None, fields, direction=direction, sender=sender)


def open_message(
    binding: Binding,
    fields: SealFields,
    body: Body,
    keys: Keys,
    now: int,
    window: int,
    max_body_size: int,
) -> Opened:
    """Check freshness, decrypt, bound the plaintext; the envelope's form is already checked."""
    ts = int(fields.timestamp)
    # Whole seconds, the same both ways: now - W <= ts <= now + W.
    if not now - window <= ts <= now + window:
        raise reject("stale timestamp", binding, fields)
    sealed_headers: Sequence[tuple[str, str]] = ()
    try:
        if isinstance(keys, tuple):
            content_type, sealed_headers, plaintext = open_v2(*keys, binding, fields, body)
        else:
            content_type, plaintext = open_v1(keys, binding, fields, body)
    except (InvalidTag, UnicodeDecodeError):
        raise reject("bad tag", binding, fields) from None
    except (FieldError, ValueError):
        raise reject("malformed sealed headers", binding, fields) from None
    if len(plaintext) > max_body_size:
        raise reject("body too large", binding, fields)
    return Opened._make(
        binding.sender,
        plaintext,
        content_type,
        fields.message_id,
        fields.kid,
        ts,
        fields.version,
        tuple(sealed_headers),
    )


def v1_key(
    keyring: Keyring, binding: Binding, fields: SealFields, body: Body, max_body_size: int
) -> Key:
    """Find the sender's shared key the seal names, or refuse."""
    try:
        keys = keyring.keys_for(binding.sender)
    except ConfigurationError as exc:
        raise reject(
            f"no usable key for sender ({exc.variable}: {exc.reason})", binding, fields
        ) from None
    key = keys.find(fields.kid)
    if key is None:
        raise reject("unknown key id", binding, fields)
    if len(body) > max_body_size + TAG_BYTES:
        raise reject("body too large", binding, fields)
    return key


def v2_keys(
    identity: Identity, trust: TrustStore, binding: Binding, fields: SealFields
) -> tuple[PrivateKey, PublicKey]:
    """Find this service's private key and the sender's trusted public key, or refuse."""
    try:
        own = identity.find(fields.recipient_kid) if identity.available() else None
        peer = trust.find(binding.sender, fields.sender_kid)
    except ConfigurationError as exc:
        raise reject(f"unusable keys ({exc.variable}: {exc.reason})", binding, fields) from None
    if own is None:
        raise reject("unknown recipient key id", binding, fields)
    if peer is None:
        raise reject("no trusted public key of the sender with that id", binding, fields)
    return own, peer
