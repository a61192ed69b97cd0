"""Protocol v2's trust: each service's own key pair, and the public keys of its peers.

* :mod:`.keys`: X25519 private and public keys, their text form, key ids;
* :mod:`.identity`: :class:`Identity`, this service's private keys;
* :mod:`.document`: the trust file's format;
* :mod:`.signing`: trust roots, which sign trust files;
* :mod:`.store`: :class:`TrustStore`, the peers' public keys and callers.

The protocol itself is in :mod:`mscomm_sync.envelope`; ``docs/protocol.md``
specifies both.
"""

from .document import TrustDocument, TrustError
from .identity import Identity
from .keys import PrivateKey, PublicKey, generate_private_key
from .signing import ROOT_ENV, RootKey, generate_root
from .store import TRUST_ENV, TrustStore

__all__ = [
    "ROOT_ENV",
    "TRUST_ENV",
    "Identity",
    "PrivateKey",
    "PublicKey",
    "RootKey",
    "TrustDocument",
    "TrustError",
    "TrustStore",
    "generate_private_key",
    "generate_root",
]
