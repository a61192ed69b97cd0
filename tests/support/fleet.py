"""A fleet of services with protocol v2 keys, for tests: who holds which key, in memory.

Each service gets an X25519 key pair. ``trust(...)`` is a TrustStore that
knows the public keys of the services named (read from an in-memory
environment, as ``<NAME>_PUBLIC_KEY``); ``identity(name)`` holds that
service's private key alone; ``environ(...)`` is what a process of the fleet
would have in its environment.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Optional

from mscomm_sync.envelope import Envelope
from mscomm_sync.keyring import variable_name
from mscomm_sync.replay import MemoryReplayStore
from mscomm_sync.trust import Identity, PrivateKey, TrustStore, generate_private_key


class Fleet:
    """The key pairs of some services."""

    def __init__(self, *names: str) -> None:
        self.keys: dict[str, list[PrivateKey]] = {n: [generate_private_key()] for n in names}

    def rotate(self, name: str) -> PrivateKey:
        """Give ``name`` a new current key (the old one stays, second)."""
        new = generate_private_key()
        self.keys[name].insert(0, new)
        return new

    def private(self, name: str) -> bytes:
        """The raw current private key of ``name`` (for an attacker holding it)."""
        return base64.urlsafe_b64decode(self.keys[name][0].text() + "=")

    def public(self, name: str) -> bytes:
        """The raw current public key of ``name``."""
        return self.keys[name][0].public.raw

    def identity(self, name: str) -> Identity:
        """``name``'s own private keys, and no one else's."""
        return Identity(name, keys=self.keys[name])

    def environ(self, *names: str, private: Iterable[str] = ()) -> dict[str, str]:
        """An environment with the public keys of ``names`` and the private keys of ``private``."""
        env = {
            variable_name(n, "PUBLIC_KEY"): ",".join(k.public.text for k in self.keys[n])
            for n in names
        }
        for name in private:
            env[variable_name(name, "PRIVATE_KEY")] = ",".join(k.text() for k in self.keys[name])
        return env

    def server_environ(self, name: str, caller: str, folder: Path, **extra: str) -> dict[str, str]:
        """The environment of ``name`` served under gunicorn, taking calls from ``caller``.

        Its private key, ``caller``'s public key, and its host-wide replay table
        (``replay.table``) and idempotency store (``idempotency.sqlite3``) in
        ``folder``; ``extra`` is added last.
        """
        env = self.environ(caller, private=[name])
        env.update(
            SERVICE_NAME=name,
            MSCOMM_CALLERS=caller,
            MSCOMM_REPLAY_DB=str(folder / "replay.table"),
            MSCOMM_IDEMPOTENCY_DB=str(folder / "idempotency.sqlite3"),
        )
        env.update(extra)
        return env

    def trust(self, *names: str, clock: Any = None) -> TrustStore:
        """A trust store with the public keys of ``names`` only."""
        options: dict[str, Any] = {"environ": self.environ(*names)}
        if clock is not None:
            options["clock"] = clock
        return TrustStore(**options)

    def envelope(
        self,
        name: str,
        *peers: str,
        clock: Optional[Any] = None,
        versions: Iterable[str] = ("2",),
    ) -> Envelope:
        """``name``'s envelope: its own key, the public keys of ``peers``, a memory store."""
        options: dict[str, Any] = {}
        if clock is not None:
            options["clock"] = clock
        return Envelope(
            name,
            identity=self.identity(name),
            trust=self.trust(*peers, clock=clock),
            versions=versions,
            replay_store=MemoryReplayStore(**options),
            **options,
        )
