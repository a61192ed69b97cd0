"""Protocol v2's keys: a service's X25519 key pair, their text form and their key ids.

Trust model: a private key is the one secret a service holds, and only that
service: it must never leave the service's own environment or secret store,
nor appear in a log line, an error message or a repr. A public key is not
secret; it is distributed as configuration (a trust file, or an environment
variable). Every key is 32 bytes written as URL-safe base64 without padding
(43 characters); a key id is the first 16 hex digits of
``SHA-256(b"mscomm-sync key id v2\\x00" || public key)``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from typing import Optional

import attrs
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from ..errors import ConfigurationError

__all__ = ["KEY_BYTES", "PrivateKey", "PublicKey", "generate_private_key", "key_id", "parse_key"]

KEY_BYTES = 32
_KID_LABEL = b"mscomm-sync key id v2\x00"
_B64URL = re.compile(r"[A-Za-z0-9_-]{43}=?\Z")
_HOWTO = "make a key pair with `mscomm keygen`"
_ROOT_HOWTO = "make a trust root with `mscomm trust root`"


def key_id(public: bytes) -> str:
    """Return the key id of a 32-byte public key (16 lower-case hex digits)."""
    return hashlib.sha256(_KID_LABEL + public).hexdigest()[:16]


def parse_key(text: str, *, source: str, what: str) -> bytes:
    """Return the 32 bytes a key's text stands for.

    Args:
        text: URL-safe base64 of 32 bytes, padding optional.
        source: where it came from (a variable, a file, a trust file entry),
            named in errors instead of the value.
        what: "private key" or "public key", for the message.

    Raises:
        ConfigurationError: it is not base64 of exactly 32 bytes.
    """
    candidate = text.strip()
    howto = _ROOT_HOWTO if what.startswith("trust root") else _HOWTO
    if not _B64URL.match(candidate):
        raise ConfigurationError(
            f"{source} does not hold a valid {what} (43 URL-safe base64 characters); {howto}",
            variable=source,
            reason=f"invalid {what}",
        )
    try:
        raw = base64.urlsafe_b64decode(candidate.rstrip("=") + "=")
    except (binascii.Error, ValueError):  # pragma: no cover - the regex admits only base64
        raise ConfigurationError(
            f"{source} does not hold a valid {what}; {howto}",
            variable=source,
            reason=f"invalid {what}",
        ) from None
    return raw


def _text(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


@attrs.frozen(repr=False, eq=False)
class PublicKey:
    """A service's X25519 public key, with its key id and an optional end of validity.

    Attributes:
        raw: the 32 bytes.
        kid: its key id.
        not_after: the Unix time after which it is no longer trusted, or ``None``.
    """

    raw: bytes
    kid: str
    _key: X25519PublicKey = attrs.field(alias="key")
    not_after: Optional[float] = None

    @classmethod
    def from_bytes(cls, raw: bytes, *, not_after: Optional[float] = None) -> PublicKey:
        """Wrap 32 raw bytes.

        Raises:
            ConfigurationError: not 32 bytes.
        """
        if len(raw) != KEY_BYTES:
            raise ConfigurationError(f"a public key is {KEY_BYTES} bytes", reason="wrong length")
        return cls(
            raw=bytes(raw),
            kid=key_id(raw),
            not_after=not_after,
            key=X25519PublicKey.from_public_bytes(raw),
        )

    @classmethod
    def from_text(cls, text: str, *, source: str, not_after: Optional[float] = None) -> PublicKey:
        """Parse a public key's text form; errors name ``source``."""
        return cls.from_bytes(
            parse_key(text, source=source, what="public key"), not_after=not_after
        )

    @property
    def text(self) -> str:
        """The public key as URL-safe base64 (it is not secret)."""
        return _text(self.raw)

    def valid_at(self, now: float) -> bool:
        """Return whether the key is still trusted at the Unix time ``now``."""
        return self.not_after is None or now <= self.not_after

    def __repr__(self) -> str:
        return f"<PublicKey kid={self.kid!r}>"


@attrs.frozen(repr=False, eq=False)
class PrivateKey:
    """A service's X25519 private key and its public half. The repr shows the key id only.

    Attributes:
        public: the public key.
    """

    public: PublicKey
    _key: X25519PrivateKey = attrs.field(alias="key")

    @classmethod
    def from_bytes(cls, raw: bytes) -> PrivateKey:
        """Wrap 32 raw bytes.

        Raises:
            ConfigurationError: not 32 bytes.
        """
        if len(raw) != KEY_BYTES:
            raise ConfigurationError(f"a private key is {KEY_BYTES} bytes", reason="wrong length")
        key = X25519PrivateKey.from_private_bytes(raw)
        public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        return cls(public=PublicKey.from_bytes(public), key=key)

    @classmethod
    def from_text(cls, text: str, *, source: str) -> PrivateKey:
        """Parse a private key's text form; errors name ``source``, never the value."""
        return cls.from_bytes(parse_key(text, source=source, what="private key"))

    @property
    def kid(self) -> str:
        """The key id of its public half."""
        return self.public.kid

    def exchange(self, peer: PublicKey) -> bytes:
        """Return the X25519 shared secret with ``peer``.

        Raises:
            ValueError: the result is all zeros (a low-order point; refused).
        """
        return self._key.exchange(peer._key)

    def text(self) -> str:
        """Return the private key's text form (for ``mscomm keygen`` only: it is the secret)."""
        raw = self._key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        return _text(raw)

    def __repr__(self) -> str:
        return f"<PrivateKey kid={self.kid!r}>"

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("a private key is never pickled")


def generate_private_key() -> PrivateKey:
    """Return a fresh X25519 private key."""
    key = X25519PrivateKey.generate()
    return PrivateKey.from_bytes(key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption()))
