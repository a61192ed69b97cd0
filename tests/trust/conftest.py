"""Helpers for the trust tests: real key pairs, real trust documents written to real files."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Optional

import pytest

from mscomm_sync.trust import PrivateKey, generate_private_key
from mscomm_sync.trust.signing import generate_root


def key_entry(key: PrivateKey, not_after: Optional[str] = None) -> dict[str, Any]:
    """The trust file's entry for ``key``'s public half."""
    entry: dict[str, Any] = {"id": key.kid, "public_key": key.public.text}
    if not_after is not None:
        entry["not_after"] = not_after
    return entry


def document(
    services: Mapping[str, Sequence[PrivateKey]],
    *,
    serial: int = 1,
    callers: Optional[Mapping[str, Sequence[str]]] = None,
) -> dict[str, Any]:
    """A valid trust document listing the public halves of ``services``' keys."""
    entries: dict[str, Any] = {}
    for name, keys in services.items():
        entries[name] = {"keys": [key_entry(k) for k in keys]}
        if callers is not None and name in callers:
            entries[name]["callers"] = list(callers[name])
    return {"format": "mscomm-trust", "version": 1, "serial": serial, "services": entries}


def write(path: Path, doc: Mapping[str, Any]) -> Path:
    """Write ``doc`` to ``path`` as a reader would find it (pretty JSON)."""
    path.write_text(json.dumps(doc, indent=2))
    return path


@pytest.fixture
def billing() -> PrivateKey:
    """billing's key pair."""
    return generate_private_key()


@pytest.fixture
def orders() -> PrivateKey:
    """orders' key pair."""
    return generate_private_key()


@pytest.fixture
def root() -> tuple[str, str]:
    """A trust root: (private key text, public key text)."""
    return generate_root()
