"""This service's own private keys: the one secret a service holds under protocol v2.

They come from ``<NAME>_PRIVATE_KEY`` (or a file named by
``<NAME>_PRIVATE_KEY_FILE``): one key, or several comma-separated (one per
line in a file) while the service rotates. The first is the current key: it
seals this service's requests. Every one of them opens what peers sealed to
it (the key id in the seal picks exactly one), so a peer that still seals to
the previous public key is answered until that key is removed.

Nothing here ever puts a key, or any part of one, into a message or a repr:
errors name the variable or the file.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Mapping
from typing import Optional

from ..errors import ConfigurationError
from ..keyring import validate_service_name, variable_name
from .keys import PrivateKey

__all__ = ["Identity"]

_HOWTO = "make a key pair with `mscomm keygen` and set it there"


class Identity:
    """The private keys of one service, read lazily and cached.

    Args:
        service: the service's name.
        environ: where to read ``<NAME>_PRIVATE_KEY`` and
            ``<NAME>_PRIVATE_KEY_FILE``; defaults to ``os.environ``.
        keys: the keys themselves, instead of the environment (the first
            seals); for tests and secret stores.

    Raises:
        ConfigurationError: the name is invalid.
    """

    def __init__(
        self,
        service: str,
        *,
        environ: Optional[Mapping[str, str]] = None,
        keys: Optional[Iterable[PrivateKey]] = None,
    ) -> None:
        self.service = validate_service_name(service)
        self._environ: Mapping[str, str] = os.environ if environ is None else environ
        self._keys: Optional[tuple[PrivateKey, ...]] = tuple(keys) if keys is not None else None
        self._static = keys is not None
        # Looked up on every message sealed (is v2 possible?): computed once.
        variable = variable_name(self.service, "PRIVATE_KEY")
        self._variables = (variable, variable + "_FILE")
        self._lock = threading.Lock()
        if self._keys == ():
            raise ConfigurationError(f"no private key given for {service!r}", reason="empty")

    @property
    def variable(self) -> str:
        """The variable the keys are read from."""
        return self._variables[0]

    def available(self) -> bool:
        """Return whether this service has a private key configured (it speaks protocol v2)."""
        if self._static or self._keys is not None:
            return True
        variable, file_variable = self._variables
        return variable in self._environ or file_variable in self._environ

    def keys(self) -> tuple[PrivateKey, ...]:
        """Return the keys, the current one first.

        Raises:
            ConfigurationError: none is configured, or one is malformed (the
                message names the variable or file, never the value).
        """
        found = self._keys
        if found is None:
            with self._lock:
                found = self._keys = self._read()
        return found

    @property
    def current(self) -> PrivateKey:
        """The key this service seals its requests with."""
        return self.keys()[0]

    def find(self, kid: str) -> Optional[PrivateKey]:
        """Return the key whose public half has id ``kid``, or ``None``."""
        return next((k for k in self.keys() if k.kid == kid), None)

    def reload(self) -> None:
        """Forget keys read from the environment, so the next use reads them again."""
        if not self._static:
            with self._lock:
                self._keys = None

    def _read(self) -> tuple[PrivateKey, ...]:
        var = self.variable
        value = self._environ.get(var)
        source = var
        if value is None:
            path = self._environ.get(var + "_FILE")
            if path is None:
                raise ConfigurationError(
                    f"no private key for service {self.service!r}: set {var} or {var}_FILE; "
                    f"{_HOWTO}",
                    variable=var,
                    reason="missing",
                )
            source = f"{var}_FILE ({path})"
            try:
                with open(path, encoding="ascii") as f:
                    value = ",".join(line.strip() for line in f if line.strip())
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigurationError(
                    f"cannot read the private key file named by {var}_FILE: "
                    f"{getattr(exc, 'strerror', None) or type(exc).__name__}",
                    variable=var + "_FILE",
                    reason="unreadable",
                ) from None
        parts = [p for p in value.split(",") if p.strip()]
        if not parts:
            raise ConfigurationError(f"{source} is empty; {_HOWTO}", variable=var, reason="empty")
        return tuple(PrivateKey.from_text(p, source=source) for p in parts)

    def __reduce__(self) -> tuple[object, ...]:
        """Pickle as "read the environment again": the copy reads its keys itself.

        Raises:
            TypeError: the keys were given, or are read from a mapping other
                than ``os.environ``: pickling would copy a private key into
                the pickle.
        """
        if self._static or self._environ is not os.environ:
            raise TypeError(
                "this Identity holds private keys (given as keys= or in a mapping): it is "
                "never pickled, so that no pickle ever holds a private key; use the "
                "environment, or build it again"
            )
        return (Identity, (self.service,))

    def __copy__(self) -> Identity:
        return self

    def __deepcopy__(self, memo: dict[int, object]) -> Identity:
        return self

    def __repr__(self) -> str:
        kids = ",".join(k.kid for k in self._keys) if self._keys else "unread"
        return f"<Identity service={self.service!r} kids={kids!r}>"
