"""Trust files for tests: a document of public keys and callers, written the way readers expect.

What :class:`~mscomm_sync.testing.keys.KeyFactory` writes is a real trust file
(``docs/keys.md``), checked by the real parser before it is written, and
replaced atomically so a service re-reading it never sees half of one. It
holds public keys only.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Optional

from ..trust.document import FORMAT, SCHEMA, parse
from ..trust.keys import PublicKey
from ..trust.signing import sign

__all__ = ["trust_document", "write_document"]


def trust_document(
    names: Iterable[str],
    public: Mapping[str, PublicKey],
    callers: Mapping[str, Iterable[str]],
    serial: int,
) -> dict[str, Any]:
    """Return a trust document listing ``names``.

    Args:
        names: the services, in order.
        public: their public keys (a service without one is listed with none).
        callers: who may call each service that says so.
        serial: the document's serial.
    """
    entries: dict[str, Any] = {}
    for name in names:
        key = public.get(name)
        entries[name] = {"keys": [] if key is None else [{"id": key.kid, "public_key": key.text}]}
        if name in callers:
            entries[name]["callers"] = sorted(set(callers[name]))
    return {"format": FORMAT, "version": SCHEMA, "serial": serial, "services": entries}


def write_document(path: Path, document: Mapping[str, Any], root_key: Optional[str] = None) -> Path:
    """Write ``document`` to ``path`` atomically, signed with ``root_key`` if given.

    Raises:
        ConfigurationError: ``root_key`` is not a root's private key.
        TrustError: the document is not one a reader would accept.
    """
    if root_key is not None:
        document = sign(document, root_key, source="the root_key argument")
    data = (json.dumps(document, indent=2, sort_keys=True) + "\n").encode("ascii")
    parse(data)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return path
