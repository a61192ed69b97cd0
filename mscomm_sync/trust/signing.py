"""Trust roots: Ed25519 keys that sign trust files, so any channel can carry them.

Trust model: whoever holds a root's private key decides which public key
speaks for which service, so it is kept offline, used only to sign. A
service pins the roots' public keys in ``MSCOMM_TRUST_ROOT`` (several
comma-separated, to rotate the root); a trust file is then accepted only if
one of them signed it, whoever delivered it (a registry, a config map, a
shared disk). A root key id is the first 16 hex digits of
``SHA-256(b"mscomm-sync trust root\\x00" || public key)``.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from .document import TrustDocument, TrustError, canonical_bytes
from .keys import parse_key

__all__ = [
    "ROOT_ENV",
    "RootKey",
    "generate_root",
    "parse_roots",
    "root_key_id",
    "sign",
    "verify",
]

#: The variable that pins the trust roots' public keys.
ROOT_ENV = "MSCOMM_TRUST_ROOT"
_LABEL = b"mscomm-sync trust root\x00"


def root_key_id(public: bytes) -> str:
    """Return the key id of a trust root's 32-byte Ed25519 public key."""
    return hashlib.sha256(_LABEL + public).hexdigest()[:16]


def _text(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


class RootKey:
    """A trust root's public key (what services pin)."""

    def __init__(self, public: bytes) -> None:
        self.raw = public
        self.kid = root_key_id(public)
        self._key = Ed25519PublicKey.from_public_bytes(public)

    def verifies(self, data: bytes, signature: bytes) -> bool:
        """Return whether ``signature`` is this root's over ``data``."""
        try:
            self._key.verify(signature, data)
        except InvalidSignature:
            return False
        return True

    @property
    def text(self) -> str:
        """The public key as URL-safe base64."""
        return _text(self.raw)

    def __repr__(self) -> str:
        return f"<RootKey kid={self.kid!r}>"


def parse_roots(value: str, *, source: str = ROOT_ENV) -> tuple[RootKey, ...]:
    """Parse comma-separated root public keys; errors name ``source``.

    Raises:
        ConfigurationError: a key does not parse, or there is none.
    """
    from ..errors import ConfigurationError

    parts = [p for p in value.split(",") if p.strip()]
    if not parts:
        raise ConfigurationError(f"{source} is empty", variable=source, reason="empty")
    return tuple(RootKey(parse_key(p, source=source, what="trust root")) for p in parts)


def generate_root() -> tuple[str, str]:
    """Return a fresh root as ``(private key text, public key text)``."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return _text(private), _text(public)


def sign(document: Mapping[str, Any], private_text: str, *, source: str) -> dict[str, Any]:
    """Return ``document`` signed by the root whose private key is ``private_text``.

    Raises:
        ConfigurationError: the private key does not parse (named by ``source``).
    """
    raw = parse_key(private_text, source=source, what="trust root private key")
    key = Ed25519PrivateKey.from_private_bytes(raw)
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    signed = {k: v for k, v in document.items() if k != "signature"}
    signature = key.sign(canonical_bytes(signed))
    signed["signature"] = {
        "algorithm": "ed25519",
        "key_id": root_key_id(public),
        "value": _text(signature),
    }
    return signed


def verify(document: TrustDocument, roots: tuple[RootKey, ...]) -> RootKey:
    """Return the root that signed ``document``.

    Raises:
        TrustError: it is unsigned, signed by no pinned root, or the signature is wrong.
    """
    if document.signature is None:
        raise TrustError("the trust file is not signed, and a trust root is pinned")
    kid, signature = document.signature
    root = next((r for r in roots if r.kid == kid), None)
    if root is None:
        raise TrustError(f"the trust file is signed by root {kid}, which is not pinned")
    if not root.verifies(canonical_bytes(document.raw), signature):
        raise TrustError("the trust file's signature does not verify")
    return root
