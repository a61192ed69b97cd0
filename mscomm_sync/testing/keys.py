"""Fresh service keys for a test, exported where services and clients look for them.

Keys made here are random for every test and live only in the environment of
the test that asked for them (the ``mscomm_keys`` fixture undoes every change
afterwards), so tests never share or leak key material. Each service gets a
protocol v2 key pair (``<NAME>_PRIVATE_KEY``, ``<NAME>_PUBLIC_KEY``) and, for
code and tests still written for v1, a shared key (``<NAME>_ENCRYPTION_KEY``);
calls between two services that both have pairs are sealed with v2.

Every process of the test sees every public key, as in a small setup without
a trust file. The one private key a real service would hold alone is here in
the test's environment for every service: these keys are for tests only.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path
from typing import Any, Callable, Optional, Union

from ..errors import ConfigurationError
from ..keyring import Keyring, env_var_name, generate_key, validate_service_name, variable_name
from ..trust.identity import Identity
from ..trust.keys import PrivateKey, PublicKey, generate_private_key
from ..trust.store import TRUST_ENV, TrustStore
from ..wsgi.options import CALLERS_ENV
from .trust_files import trust_document, write_document

__all__ = ["DEFAULT_KEY_VERSIONS", "KeyFactory"]

#: The protocol versions a factory makes keys for unless told otherwise.
DEFAULT_KEY_VERSIONS = ("1", "2")
_Path = Union[str, "os.PathLike[str]"]


class KeyFactory:
    """Make fresh keys per service name and export them where the library reads them.

    For each name, with protocol v2 (the default), a key pair exported as
    ``<NAME>_PRIVATE_KEY`` and ``<NAME>_PUBLIC_KEY``; with protocol v1 (also
    the default), a shared key exported as ``<NAME>_ENCRYPTION_KEY``. Asking
    again for a name returns the same keys, so fixtures and tests that each
    ask for the services they need agree on every key.

    Args:
        setenv: sets an environment variable (``monkeypatch.setenv`` in the
            fixture, so the variable is restored after the test).
        versions: the protocol versions to make keys for, some of ``"1"``
            and ``"2"``.
        fleet_file: where to keep a trust file of every service made so
            far, each listing every one of them as its callers (see
            :meth:`fleet_trust`); ``None`` keeps none.

    Raises:
        ConfigurationError: ``versions`` is empty or names another version.

    Example::

        ring = mscomm_keys("orders", "billing")  # exports ORDERS_PRIVATE_KEY, ... ; a Keyring
        identity = mscomm_keys.identity("orders")
        trust = mscomm_keys.trust("billing")      # a TrustStore holding billing's public key
    """

    def __init__(
        self,
        setenv: Callable[[str, str], None],
        *,
        versions: Collection[str] = DEFAULT_KEY_VERSIONS,
        fleet_file: Optional[_Path] = None,
    ) -> None:
        made = frozenset(str(v) for v in versions)
        if not made or not made <= set(DEFAULT_KEY_VERSIONS):
            raise ConfigurationError(
                'versions must be some of "1" and "2"', variable="versions", reason="invalid"
            )
        self.versions = made
        self._setenv = setenv
        self._keys: dict[str, str] = {}
        self._pairs: dict[str, PrivateKey] = {}
        self._names: list[str] = []
        self._fleet = Path(fleet_file) if fleet_file is not None else None
        self._fleet_stores: list[TrustStore] = []
        self._serial = 0

    def __call__(self, *names: str) -> Keyring:
        """Make and export keys for every name that has none yet; return the v1 keys so far.

        Args:
            *names: service names.

        Returns:
            A :class:`~mscomm_sync.keyring.Keyring` holding every v1 key this
            factory made (it does not read the environment; it is empty when
            the factory makes no v1 keys).

        Raises:
            ConfigurationError: a name is not a valid service name.
        """
        new = False
        for name in names:
            validate_service_name(name)
            if name in self._names:
                continue
            if "2" in self.versions:
                pair = generate_private_key()
                self._setenv(variable_name(name, "PRIVATE_KEY"), pair.text())
                self._setenv(variable_name(name, "PUBLIC_KEY"), pair.public.text)
                self._pairs[name] = pair
            if "1" in self.versions:
                key = generate_key()
                self._setenv(env_var_name(name), key)
                self._keys[name] = key
            self._names.append(name)
            new = True
        if new and self._fleet is not None:
            self._write_fleet()
        return self.keyring()

    # -- protocol v1 -------------------------------------------------------

    def keyring(self) -> Keyring:
        """Return a keyring holding every v1 key made so far."""
        return Keyring.from_mapping(self._keys)

    def key(self, name: str) -> str:
        """Return the exported v1 key of ``name``, making it first if needed.

        Returns:
            The key in its environment-variable form (URL-safe base64).

        Raises:
            ConfigurationError: this factory makes no v1 keys.
        """
        self._require("1")
        self(name)
        return self._keys[name]

    # -- protocol v2 -------------------------------------------------------

    def private_key(self, name: str) -> PrivateKey:
        """Return ``name``'s v2 private key, making its pair first if needed.

        Its repr shows only the key id; ``.text()`` is the exported form.

        Raises:
            ConfigurationError: this factory makes no v2 keys.
        """
        self._require("2")
        self(name)
        return self._pairs[name]

    def public_key(self, name: str) -> PublicKey:
        """Return ``name``'s v2 public key (``.text`` is the exported form)."""
        return self.private_key(name).public

    def identity(self, name: str) -> Identity:
        """Return an :class:`~mscomm_sync.trust.Identity` of ``name`` holding its private key.

        It holds the key itself, so it never reads the environment and is
        never pickled; ``Identity(name)`` reads the exported variable instead.
        """
        return Identity(name, keys=[self.private_key(name)])

    def trust(self, *peers: str) -> TrustStore:
        """Return a :class:`~mscomm_sync.trust.TrustStore` that knows ``peers``' public keys.

        Args:
            *peers: the services whose public keys it holds (made if needed);
                none means every service made so far.

        Returns:
            A store reading a mapping of its own, not the environment: it
            knows no other service, and is never pickled.
        """
        self._require("2")
        self(*peers)
        named = peers or tuple(self._names)
        known = {self._public_variable(p): self._pairs[p].public.text for p in named}
        return TrustStore(environ=known)

    def environ(
        self,
        name: str,
        *,
        peers: Optional[Iterable[str]] = None,
        callers: Optional[Iterable[str]] = None,
        trust_file: Optional[_Path] = None,
    ) -> dict[str, str]:
        """Return the variables a process of service ``name`` would have.

        For a server or worker the test starts in another process: its
        ``SERVICE_NAME``, its own private key and its peers' public keys
        (v2), its own and its peers' shared keys (v1), and who may call it.
        Keys are made for every name given that has none yet.

        Args:
            name: the service the process runs.
            peers: the services it talks to; ``None`` means every other
                service made so far.
            callers: sets ``MSCOMM_CALLERS`` to these names when given.
            trust_file: sets ``MSCOMM_TRUST`` to this path when given (see
                :meth:`write_trust_file`).

        Returns:
            A new dict, to merge into the process's environment.
        """
        others = list(peers) if peers is not None else None
        self(name, *(others or ()))
        if others is None:
            others = [n for n in self._names if n != name]
        env = {"SERVICE_NAME": name}
        if "2" in self.versions:
            env[variable_name(name, "PRIVATE_KEY")] = self._pairs[name].text()
            for peer in others:
                env[self._public_variable(peer)] = self._pairs[peer].public.text
        if "1" in self.versions:
            for service in (name, *others):
                env[env_var_name(service)] = self._keys[service]
        if callers is not None:
            env[CALLERS_ENV] = ",".join(validate_service_name(c) for c in callers)
        if trust_file is not None:
            env[TRUST_ENV] = os.fspath(trust_file)
        return env

    # -- trust files ---------------------------------------------------------

    def write_trust_file(
        self,
        path: _Path,
        *,
        services: Optional[Iterable[str]] = None,
        callers: Optional[Mapping[str, Iterable[str]]] = None,
        root_key: Optional[str] = None,
        serial: int = 1,
    ) -> Path:
        """Write a trust file listing services' v2 public keys, and who may call each.

        A v1-only factory writes entries without keys, which still say who
        may call whom.

        Args:
            path: the file to write (replaced atomically).
            services: the services to list (made if needed); ``None`` means
                every service made so far. Those named in ``callers``, on
                either side, are listed too.
            callers: ``{service: callers}`` for the entries that say who may
                call them; services not in it have no ``callers`` (the
                middleware then falls back to ``MSCOMM_CALLERS``).
            root_key: a trust root's private key (``generate_root()[0]``) to
                sign the file with; unsigned when ``None``.
            serial: the document's serial.

        Returns:
            The path written.
        """
        listed = list(services) if services is not None else None
        grants = {s: list(c) for s, c in (callers or {}).items()}
        self(*(listed or ()), *grants, *(c for cs in grants.values() for c in cs))
        names = listed if listed is not None else list(self._names)
        for service, who in grants.items():
            names += [s for s in (service, *who) if s not in names]
        return write_document(Path(path), self._document(names, grants, serial), root_key)

    @property
    def fleet_file(self) -> Optional[Path]:
        """The trust file of every service made so far (``None`` if the factory keeps none)."""
        return self._fleet

    def fleet_trust(self) -> TrustStore:
        """Return a store of the fleet file, which this factory keeps current.

        The file lists the public key of every service made so far and, for
        each, every one of them as its callers; the store is re-read each
        time a name is added, so a service given it (``mscomm_service`` does)
        accepts calls from services whose keys are made after it started.

        Raises:
            ConfigurationError: the factory keeps no fleet file.
        """
        if self._fleet is None:
            raise ConfigurationError(
                "this KeyFactory keeps no fleet file: pass fleet_file=", reason="missing"
            )
        if not self._fleet.exists():
            self._write_fleet()
        # No pinned root: the fleet file is unsigned, whatever MSCOMM_TRUST_ROOT says.
        store = TrustStore(self._fleet, roots=())
        self._fleet_stores.append(store)
        return store

    def _write_fleet(self) -> None:
        assert self._fleet is not None
        self._serial += 1
        grants = {name: list(self._names) for name in self._names}
        write_document(self._fleet, self._document(list(self._names), grants, self._serial))
        for store in self._fleet_stores:
            store.reload()

    def _document(
        self, names: list[str], callers: Mapping[str, list[str]], serial: int
    ) -> dict[str, Any]:
        public = {n: self._pairs[n].public for n in names if n in self._pairs}
        return trust_document(names, public, callers, serial)

    # -- the rest ------------------------------------------------------------

    def _require(self, version: str) -> None:
        if version not in self.versions:
            made = ",".join(sorted(self.versions))
            raise ConfigurationError(
                f"this KeyFactory makes no protocol v{version} keys (versions={made})",
                variable="versions",
                reason="not made",
            )

    @staticmethod
    def _public_variable(name: str) -> str:
        return variable_name(name, "PUBLIC_KEY")

    @property
    def names(self) -> list[str]:
        """The service names that have keys, sorted."""
        return sorted(self._names)

    def __repr__(self) -> str:
        versions = ",".join(sorted(self.versions))
        return f"<KeyFactory names={self.names!r} versions={versions!r}>"
