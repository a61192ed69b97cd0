"""Service keys: where they come from, what they look like, how they rotate.

Trust model: a service's key is a 32-byte secret shared by that service and
every service that talks to it. Whoever holds it can seal messages *as* that
service, so it must be handled like a password: kept in the environment or a
secret store, never in code, logs, error messages or reprs. This module never
puts any part of a key, or of a rejected value, into a message.

A service's keys live in ``<NAME>_ENCRYPTION_KEY``, where ``NAME`` is the
service name upper-cased with ``-`` replaced by ``_``; because service names
have one canonical form (:func:`validate_service_name`), each name reads
exactly one variable and each variable belongs to exactly one name. The
variable may hold several comma-separated keys: the first seals, all of them
open. Each key has a key id, derived from the key itself, that travels in the
envelope so the receiver picks exactly one key to try.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import secrets
import threading
from collections.abc import Iterable, Mapping
from typing import Any, Optional, Union

import attrs

from .errors import ConfigurationError

__all__ = [
    "KEY_BYTES",
    "Key",
    "Keyring",
    "ServiceKeys",
    "env_var_name",
    "generate_key",
    "validate_service_name",
    "variable_name",
]

KEY_BYTES = 32
_KID_LABEL = b"mscomm-sync key id v1\x00"
_SERVICE_NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,126}[a-z0-9])?\Z")
_B64URL = re.compile(r"[A-Za-z0-9_-]+={0,2}\Z")
_HOWTO = "generate one with `mscomm keygen --v1` (32 random bytes, URL-safe base64)"


def validate_service_name(name: str, *, what: str = "service name") -> str:
    """Return ``name`` if it is a service name in its one canonical form, else raise.

    A service name is 1 to 128 lower-case letters, digits and ``-``, starting
    and ending with a letter or digit (an RFC 1123 label, like a Kubernetes
    Service name, but up to 128 long). So a service is known under exactly one
    name, compared exactly as written, and each name reads exactly one
    variable: ``billing-v2`` reads ``BILLING_V2_ENCRYPTION_KEY`` and no other
    valid name does. ``Billing``, ``BILLING``, ``billing_v2`` and
    ``billing.v2`` are refused, never treated as aliases.

    Raises:
        ConfigurationError: the name is empty, not lower case, or has other
            characters.
    """
    if not isinstance(name, str) or not _SERVICE_NAME.match(name):
        shown = repr(name[:64]) if isinstance(name, str) and name.isprintable() else "it"
        raise ConfigurationError(
            f"invalid {what} {shown}: use 1-128 lower-case letters, digits and '-', "
            "starting and ending with a letter or digit",
            variable=None,
            reason="invalid service name",
        )
    return name


def variable_name(service: str, suffix: str) -> str:
    """Return the environment variable ``<NAME>_<suffix>`` of ``service``.

    >>> variable_name("other-service", "PUBLIC_KEY")
    'OTHER_SERVICE_PUBLIC_KEY'
    """
    return re.sub(r"[^A-Z0-9]", "_", service.upper()) + "_" + suffix


def env_var_name(service: str) -> str:
    """Return the environment variable that holds ``service``'s (protocol v1) keys.

    >>> env_var_name("other-service")
    'OTHER_SERVICE_ENCRYPTION_KEY'
    """
    return variable_name(service, "ENCRYPTION_KEY")


def generate_key() -> str:
    """Return a fresh key: 32 random bytes in URL-safe base64 without padding."""
    return base64.urlsafe_b64encode(secrets.token_bytes(KEY_BYTES)).rstrip(b"=").decode("ascii")


@attrs.frozen(repr=False, eq=False)
class Key:
    """One 32-byte key and its key id.

    The repr shows only the key id, never the secret.
    """

    secret: bytes
    kid: str

    @classmethod
    def from_text(cls, text: str, *, source: str) -> Key:
        """Parse one key from its URL-safe base64 form.

        Args:
            text: the encoded key, padding optional.
            source: where it came from (a variable name), for error messages.

        Raises:
            ConfigurationError: the text is not base64 of exactly 32 bytes.
        """
        candidate = text.strip()
        if not candidate:
            raise ConfigurationError(
                f"{source} holds an empty key; {_HOWTO}", variable=source, reason="empty"
            )
        if not _B64URL.match(candidate):
            raise ConfigurationError(
                f"{source} does not hold a valid key (not URL-safe base64); {_HOWTO}",
                variable=source,
                reason="not base64",
            )
        try:
            secret = base64.urlsafe_b64decode(candidate + "=" * (-len(candidate) % 4))
        except (binascii.Error, ValueError):
            raise ConfigurationError(
                f"{source} does not hold a valid key (not URL-safe base64); {_HOWTO}",
                variable=source,
                reason="not base64",
            ) from None
        if len(secret) == KEY_BYTES and not _looks_random(candidate):
            raise ConfigurationError(
                f"{source} looks like a passphrase, not a generated key; {_HOWTO}",
                variable=source,
                reason="looks like a passphrase",
            )
        if len(secret) != KEY_BYTES:
            raise ConfigurationError(
                f"{source} holds a key of the wrong length "
                f"(need {KEY_BYTES} bytes, a passphrase is not a key); {_HOWTO}",
                variable=source,
                reason="wrong length",
            )
        return cls.from_bytes(secret)

    @classmethod
    def from_bytes(cls, secret: bytes) -> Key:
        """Wrap 32 raw bytes as a key.

        Raises:
            ConfigurationError: ``secret`` is not exactly 32 bytes.
        """
        if len(secret) != KEY_BYTES:
            raise ConfigurationError(
                f"a key must be exactly {KEY_BYTES} bytes; {_HOWTO}", reason="wrong length"
            )
        kid = hashlib.sha256(_KID_LABEL + secret).hexdigest()[:16]
        return cls(secret=bytes(secret), kid=kid)

    def __repr__(self) -> str:
        return f"<Key kid={self.kid!r}>"


@attrs.frozen(repr=False)
class ServiceKeys:
    """The keys of one service: the first seals, all of them open."""

    service: str
    keys: tuple[Key, ...]
    _by_kid: Mapping[str, Key] = attrs.field(alias="by_kid")

    @classmethod
    def parse(cls, service: str, value: str, *, source: str) -> ServiceKeys:
        """Parse a comma-separated list of keys.

        Raises:
            ConfigurationError: the list is empty or any key is malformed.
        """
        parts = [p for p in value.split(",") if p.strip()]
        if not parts:
            raise ConfigurationError(
                f"{source} is empty; {_HOWTO}", variable=source, reason="empty"
            )
        keys = tuple(Key.from_text(p, source=source) for p in parts)
        return cls.of(service, keys)

    @classmethod
    def of(cls, service: str, keys: Iterable[Key]) -> ServiceKeys:
        """Build from already-parsed keys, the first being the sealing key."""
        keys = tuple(keys)
        if not keys:
            raise ConfigurationError(f"no keys given for service {service!r}", reason="empty")
        return cls(service=service, keys=keys, by_kid={k.kid: k for k in keys})

    @property
    def sealing(self) -> Key:
        """The key new messages are sealed with."""
        return self.keys[0]

    def find(self, kid: str) -> Optional[Key]:
        """Return the key with id ``kid``, or ``None``."""
        return self._by_kid.get(kid)

    def __repr__(self) -> str:
        kids = ",".join(k.kid for k in self.keys)
        return f"<ServiceKeys service={self.service!r} kids={kids!r}>"


KeySource = Union[str, bytes, Key, Iterable[Union[str, bytes, Key]]]


class Keyring:
    """Looks up a service's keys, by default from the environment.

    Keys are read lazily, the first time a service is needed, and cached; call
    :meth:`reload` after rotating keys in the environment. Build one from a
    mapping with :meth:`from_mapping` for tests or a secret store.

    Args:
        environ: where to read ``<NAME>_ENCRYPTION_KEY`` variables; defaults to
            ``os.environ``.
    """

    def __init__(self, environ: Optional[Mapping[str, str]] = None) -> None:
        self._environ: Mapping[str, str] = os.environ if environ is None else environ
        self._static: dict[str, ServiceKeys] = {}
        self._cache: dict[str, ServiceKeys] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_mapping(cls, keys: Mapping[str, KeySource]) -> Keyring:
        """Build a keyring from ``{service: keys}``; the environment is not read.

        Each value may be the comma-separated text of a variable, raw 32-byte
        ``bytes``, a :class:`Key`, or a list of those (the first seals).

        Raises:
            ConfigurationError: a name or key is malformed.
        """
        ring = cls(environ={})
        for service, source in keys.items():
            validate_service_name(service)
            label = f"the key for {service!r}"
            if isinstance(source, str):
                parsed = ServiceKeys.parse(service, source, source=label)
            elif isinstance(source, (bytes, Key)):
                parsed = ServiceKeys.of(service, [_coerce(source, label)])
            else:
                parsed = ServiceKeys.of(service, [_coerce(s, label) for s in source])
            ring._static[service] = parsed
        return ring

    def keys_for(self, service: str) -> ServiceKeys:
        """Return ``service``'s keys.

        Raises:
            ConfigurationError: the service has no key, or its key is malformed.
                The message names the variable, never its value.
        """
        found = self._static.get(service) or self._cache.get(service)
        if found is not None:
            return found
        validate_service_name(service)
        var = env_var_name(service)
        value = self._environ.get(var)
        if value is None:
            raise ConfigurationError(
                f"no key for service {service!r}: set {var}; {_HOWTO}",
                variable=var,
                reason="missing",
            )
        parsed = ServiceKeys.parse(service, value, source=var)
        with self._lock:
            self._cache[service] = parsed
        return parsed

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle as "read the environment again"; a keyring that holds keys refuses.

        Raises:
            TypeError: the keyring was built from a mapping, or reads a
                mapping other than ``os.environ``: pickling it would copy
                keys into the pickle.
        """
        if self._static or self._environ is not os.environ:
            raise TypeError(
                "this Keyring holds keys (built from a mapping): it is not pickled, so that "
                "no pickle ever holds a key; use the environment, or build it again"
            )
        return (Keyring, ())

    def __copy__(self) -> Keyring:
        return self  # keys are shared, never duplicated

    def __deepcopy__(self, memo: dict[int, Any]) -> Keyring:
        return self

    def reload(self) -> None:
        """Forget keys read from the environment so the next use re-reads them."""
        with self._lock:
            self._cache.clear()

    def __repr__(self) -> str:
        names = sorted(set(self._static) | set(self._cache))
        return f"<Keyring services={names!r}>"


def _looks_random(text: str) -> bool:
    # 43 random base64 characters lack upper- or lower-case letters with
    # probability below 1e-9; a long passphrase that happens to decode to 32
    # bytes ("this-is-my-very-long-and-secret-passphrase1") almost always does.
    return any(c.isupper() for c in text) and any(c.islower() for c in text)


def _coerce(source: Union[str, bytes, Key], label: str) -> Key:
    if isinstance(source, Key):
        return source
    if isinstance(source, bytes):
        return Key.from_bytes(source)
    return Key.from_text(source, source=label)
