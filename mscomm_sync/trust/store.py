"""Where a service learns its peers' public keys and who may call whom (protocol v2).

Trust model: a public key says "messages sealed with the matching private
key come from this service", so whoever can change the mapping from names to
public keys can impersonate anyone. The mapping is therefore configuration,
read from, in this order:

1. the trust file named by ``MSCOMM_TRUST`` (:mod:`.document`), which must be
   signed by a pinned root when ``MSCOMM_TRUST_ROOT`` is set, and is then safe
   to distribute through any channel (the registry included);
2. ``<NAME>_PUBLIC_KEY`` variables, for small setups, for services the trust
   file does not list.

Public keys are never taken from the registry, nor from the network.

The trust file is re-read when it changes (checked at most once a second);
a new version that fails to parse, to verify, or that has a lower serial is
refused and logged, and the last good one stays in force.

A store is pickled as where it reads, never as what it read: the copy reads
the trust file and the variables again in its own process. One that reads a
mapping of its own instead of ``os.environ`` is not pickled at all.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping
from typing import Any, Callable, Optional, Union

from ..errors import ConfigurationError
from ..keyring import variable_name
from .document import TrustDocument, TrustError, parse
from .keys import PublicKey
from .signing import ROOT_ENV, RootKey, parse_roots, verify

__all__ = ["TRUST_ENV", "TrustStore"]

log = logging.getLogger("mscomm_sync.trust")

#: The variable that names the trust file.
TRUST_ENV = "MSCOMM_TRUST"
_Signature = tuple[int, int, int]


class TrustStore:
    """The public keys of a service's peers, and who may call each.

    Args:
        path: the trust file; defaults to ``$MSCOMM_TRUST``; ``None`` and no
            variable means public keys come from the environment only.
        roots: the pinned trust roots; default from ``$MSCOMM_TRUST_ROOT``.
            With roots, the trust file must be signed by one of them.
        environ: where the variables are read; defaults to ``os.environ``.
        clock: wall-clock time, for keys' ``not_after``.
        monotonic: a monotonic clock, for how often the file is checked.
        check_interval: seconds between two checks of the file for changes.

    Raises:
        ConfigurationError: the trust file cannot be read, does not parse,
            or (with roots) is not signed by one of them; a root does not parse.
    """

    def __init__(
        self,
        path: Union[str, os.PathLike[str], None] = None,
        *,
        roots: Optional[tuple[RootKey, ...]] = None,
        environ: Optional[Mapping[str, str]] = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        check_interval: float = 1.0,
    ) -> None:
        self._environ: Mapping[str, str] = os.environ if environ is None else environ
        named = path if path is not None else self._environ.get(TRUST_ENV)
        self.path: Optional[str] = os.path.abspath(os.fspath(named)) if named else None
        # What was given rather than read from the environment: a pickle keeps
        # these, and reads the environment again for the rest.
        self._given_path = self.path if path is not None else None
        self._given_roots = roots
        if roots is None and self._environ.get(ROOT_ENV):
            roots = parse_roots(self._environ[ROOT_ENV])
        self.roots: tuple[RootKey, ...] = roots or ()
        self._clock = clock
        self._monotonic = monotonic
        self._check_interval = check_interval
        self._next_check = 0.0
        self._signature: Optional[_Signature] = None
        self._reported: Optional[tuple[Optional[_Signature], str]] = None
        self._document: Optional[TrustDocument] = None
        self._from_env: dict[str, tuple[PublicKey, ...]] = {}
        self._lock = threading.Lock()
        if self.path is not None:
            self._load(first=True)

    # -- lookups -----------------------------------------------------------

    def public_keys(self, service: str) -> tuple[PublicKey, ...]:
        """Return ``service``'s public keys still valid now, the one to seal to first.

        Raises:
            ConfigurationError: its ``<NAME>_PUBLIC_KEY`` does not parse (the
                message names the variable and the service).
        """
        now = self._clock()
        return tuple(k for k in self._all_keys(service) if k.valid_at(now))

    def sealing_key(self, service: str) -> Optional[PublicKey]:
        """Return the public key to seal to ``service`` with, or ``None`` if none is known."""
        # The first of public_keys(), without building the tuple: every v1
        # message asks this first, and for a v1 peer there is nothing to filter.
        keys = self._all_keys(service)
        if keys:
            now = self._clock()
            for key in keys:
                if key.valid_at(now):
                    return key
        return None

    def find(self, service: str, kid: str) -> Optional[PublicKey]:
        """Return ``service``'s valid public key with id ``kid``, or ``None``."""
        return next((k for k in self.public_keys(service) if k.kid == kid), None)

    def callers(self, service: str) -> Optional[frozenset[str]]:
        """Return who the trust file says may call ``service`` (``None``: it does not say)."""
        document = self._current()
        entry = document.services.get(service) if document is not None else None
        return entry.callers if entry is not None else None

    def knows(self, service: str) -> bool:
        """Return whether any public key of ``service`` is configured (valid or not)."""
        return bool(self._all_keys(service))

    @property
    def serial(self) -> Optional[int]:
        """The serial of the trust file in force, or ``None`` without one."""
        document = self._current()
        return document.serial if document is not None else None

    def _all_keys(self, service: str) -> tuple[PublicKey, ...]:
        document = self._current()
        entry = document.services.get(service) if document is not None else None
        if entry is not None:
            return entry.keys
        found = self._from_env.get(service)
        if found is None:
            var = self.variable(service)
            value = self._environ.get(var, "")
            found = tuple(
                PublicKey.from_text(p, source=f"{var} (service {service!r})")
                for p in value.split(",")
                if p.strip()
            )
            with self._lock:
                self._from_env[service] = found
        return found

    # -- the file ------------------------------------------------------------

    def reload(self) -> None:
        """Forget public keys read from the environment and check the file now."""
        with self._lock:
            self._from_env.clear()
            self._next_check = 0.0
        self._current()

    def variable(self, service: str) -> str:
        """Return the variable that holds ``service``'s public keys (``<NAME>_PUBLIC_KEY``)."""
        return variable_name(service, "PUBLIC_KEY")

    def _current(self) -> Optional[TrustDocument]:
        if self.path is not None and self._monotonic() >= self._next_check:
            self._next_check = self._monotonic() + self._check_interval
            self._load(first=False)
        return self._document

    def _load(self, *, first: bool) -> None:
        assert self.path is not None
        try:
            st = os.stat(self.path)
        except OSError as exc:
            self._failed(first, f"cannot be read ({exc.strerror or type(exc).__name__})", None)
            return
        signature = (st.st_mtime_ns, st.st_size, st.st_ino)
        if signature == self._signature:
            return
        try:
            with open(self.path, "rb") as f:
                document = parse(f.read())
            if self.roots:
                verify(document, self.roots)
        except OSError as exc:
            self._failed(first, f"cannot be read ({exc.strerror or type(exc).__name__})", signature)
            return
        except TrustError as exc:
            self._failed(first, str(exc), signature)
            return
        with self._lock:
            old = self._document
            if old is not None and document.serial < old.serial:
                log.error(
                    "trust file %s went back from serial %d to %d: refused, keeping %d",
                    self.path, old.serial, document.serial, old.serial,
                    extra={"mscomm.event": "trust file refused", "mscomm.path": str(self.path),
                           "mscomm.reason": "serial went back"},
                )  # fmt: skip
                self._signature = signature
                return
            self._document, self._signature = document, signature
            self._reported = None
        if old is not None:
            log.info(
                "trust file %s re-read: serial %d", self.path, document.serial,
                extra={"mscomm.event": "trust file read", "mscomm.path": str(self.path)},
            )  # fmt: skip

    def _failed(self, first: bool, why: str, signature: Optional[_Signature]) -> None:
        if first:
            raise ConfigurationError(
                f"trust file {self.path} (from {TRUST_ENV} or the trust= option) {why}",
                variable=TRUST_ENV,
                reason="invalid trust file",
            )
        if self._reported == (signature, why):
            return  # this version was refused already: once in the log, not at every check
        self._reported = (signature, why)
        log.error(
            "trust file %s %s; keeping the last good one", self.path, why,
            extra={"mscomm.event": "trust file refused", "mscomm.path": str(self.path),
                   "mscomm.reason": why},
        )  # fmt: skip

    # -- copies and pickles ------------------------------------------------

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle as "read the same sources again"; a store reading its own mapping refuses.

        The copy gets the trust file's path when one was given (else it reads
        ``$MSCOMM_TRUST`` again), the pinned roots when they were given (else
        ``$MSCOMM_TRUST_ROOT``; roots are public keys), the clocks and the
        check interval. It holds no public key it read: it reads the file and
        the ``<NAME>_PUBLIC_KEY`` variables itself, in its own process.

        Raises:
            TypeError: the store reads a mapping other than ``os.environ``:
                its keys could only travel inside the pickle.
        """
        if self._environ is not os.environ:
            raise TypeError(
                "this TrustStore reads public keys from a mapping of its own: it is not "
                "pickled, so that no pickle ever holds key material; use the environment "
                "or a trust file (MSCOMM_TRUST), or build it again"
            )
        roots = None if self._given_roots is None else tuple(r.raw for r in self._given_roots)
        settings = (self._clock, self._monotonic, self._check_interval)
        return (_unpickle, (self._given_path, roots, settings))

    def __copy__(self) -> TrustStore:
        return self  # one store per configuration: copies share what it read

    def __deepcopy__(self, memo: dict[int, Any]) -> TrustStore:
        return self

    def __repr__(self) -> str:
        return f"<TrustStore path={self.path!r} serial={self.serial!r} roots={len(self.roots)}>"


def _unpickle(
    path: Optional[str],
    roots: Optional[tuple[bytes, ...]],
    settings: tuple[Callable[[], float], Callable[[], float], float],
) -> TrustStore:
    """Build a store again from its pickled configuration (see ``TrustStore.__reduce__``)."""
    clock, monotonic, check_interval = settings
    return TrustStore(
        path,
        roots=None if roots is None else tuple(RootKey(raw) for raw in roots),
        clock=clock,
        monotonic=monotonic,
        check_interval=check_interval,
    )
