"""Fresh service keys for a test, exported where services and clients look for them.

Keys made here are random for every test and live only in the environment of
the test that asked for them (the ``mscomm_keys`` fixture undoes every change
afterwards), so tests never share or leak key material.
"""

from __future__ import annotations

from typing import Callable

from ..keyring import Keyring, env_var_name, generate_key, validate_service_name

__all__ = ["KeyFactory"]


class KeyFactory:
    """Make one fresh key per service name and export it as ``<NAME>_ENCRYPTION_KEY``.

    Asking again for a name returns the same key, so fixtures and tests that
    each ask for the services they need agree on every key.

    Args:
        setenv: sets an environment variable (``monkeypatch.setenv`` in the
            fixture, so the variable is restored after the test).

    Example::

        ring = mscomm_keys("orders", "billing")  # exports ORDERS_/BILLING_ENCRYPTION_KEY
    """

    def __init__(self, setenv: Callable[[str, str], None]) -> None:
        self._setenv = setenv
        self._keys: dict[str, str] = {}

    def __call__(self, *names: str) -> Keyring:
        """Export a key for every name that has none yet; return all keys so far.

        Args:
            *names: service names.

        Returns:
            A :class:`~mscomm_sync.keyring.Keyring` holding every key this
            factory made (it does not read the environment).

        Raises:
            ConfigurationError: a name is not a valid service name.
        """
        for name in names:
            validate_service_name(name)
            if name not in self._keys:
                key = generate_key()
                self._setenv(env_var_name(name), key)
                self._keys[name] = key
        return self.keyring()

    def keyring(self) -> Keyring:
        """Return a keyring holding every key made so far."""
        return Keyring.from_mapping(self._keys)

    def key(self, name: str) -> str:
        """Return the exported key of ``name``, making it first if needed.

        Returns:
            The key in its environment-variable form (URL-safe base64).
        """
        self(name)
        return self._keys[name]

    @property
    def names(self) -> list[str]:
        """The service names that have keys, sorted."""
        return sorted(self._keys)

    def __repr__(self) -> str:
        return f"<KeyFactory names={self.names!r}>"
