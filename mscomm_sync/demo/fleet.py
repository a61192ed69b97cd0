"""The demo's key pairs and trust file: one private key per service, one file of public keys.

Each service gets an X25519 key pair made here. Every gunicorn instance is
given its own service's private key and nothing else secret; the trust file
(``MSCOMM_TRUST``) holds every public key and who may call whom. The
walkthrough itself calls as ``orders`` and as ``web``, with their keys held
in memory.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping

from ..keyring import variable_name
from ..trust import Identity, PrivateKey, TrustStore, generate_private_key
from ..trust.document import FORMAT, SCHEMA, parse
from ..trust.signing import ROOT_ENV
from ..trust.store import TRUST_ENV
from ..wsgi.options import CALLERS_ENV

__all__ = ["CALLERS", "Fleet"]

#: Who may call whom: the trust file's ``callers``. ``web`` is the walkthrough
#: calling orders in step 6; it serves nothing itself.
CALLERS: Mapping[str, tuple[str, ...]] = {
    "billing": ("orders",),
    "shipping": ("orders",),
    "orders": ("web",),
    "web": (),
}

#: Settings of the caller's own environment that would change what the demo shows.
_OVERRIDDEN = (TRUST_ENV, ROOT_ENV, CALLERS_ENV)
_KEY_SUFFIXES = ("_PRIVATE_KEY", "_PRIVATE_KEY_FILE", "_PUBLIC_KEY", "_ENCRYPTION_KEY")


class Fleet:
    """The key pairs of the demo's services, and the trust file that lists them.

    Args:
        workdir: where the trust file is written.
    """

    def __init__(self, workdir: str) -> None:
        self.keys: dict[str, PrivateKey] = {name: generate_private_key() for name in CALLERS}
        self.trust_path = os.path.join(workdir, "trust.json")
        services = {
            name: {
                "callers": list(callers),
                "keys": [{"id": self.keys[name].kid, "public_key": self.keys[name].public.text}],
            }
            for name, callers in CALLERS.items()
        }
        document = {"format": FORMAT, "version": SCHEMA, "serial": 1, "services": services}
        data = json.dumps(document, indent=2, sort_keys=True).encode()
        parse(data)  # the library's own check of the format
        with open(self.trust_path, "wb") as f:
            f.write(data)

    def identity(self, name: str) -> Identity:
        """``name``'s private key, held in memory (for the walkthrough's own calls)."""
        return Identity(name, keys=[self.keys[name]])

    def trust(self) -> TrustStore:
        """The trust file, as every service reads it."""
        return TrustStore(self.trust_path, environ={})

    def environ(self, base: Mapping[str, str], name: str, **settings: str) -> dict[str, str]:
        """The environment of an instance of ``name``: its own private key and the trust file.

        Keys and trust settings inherited from ``base`` are left out, so the
        demo runs on its own keys whatever the shell holds; the registry and
        replay store settings pass through.
        """
        env = {
            k: v for k, v in base.items() if k not in _OVERRIDDEN and not k.endswith(_KEY_SUFFIXES)
        }
        env[variable_name(name, "PRIVATE_KEY")] = self.keys[name].text()
        env[TRUST_ENV] = self.trust_path
        env.update(settings)
        return env
