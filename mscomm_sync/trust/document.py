"""The trust file: which services exist, their public keys, and who may call each.

Example (``mscomm trust init`` / ``add`` / ``sign`` write it)::

    {
      "format": "mscomm-trust",
      "version": 1,
      "serial": 3,
      "services": {
        "billing": {
          "callers": ["orders"],
          "keys": [{"id": "4f1c0e2a9b3d5e67",
                    "not_after": "2027-06-30T00:00:00Z",
                    "public_key": "8Qk...43 characters..."}]
        },
        "orders": {"keys": [{"id": "...", "public_key": "..."}]}
      },
      "signature": {"algorithm": "ed25519", "key_id": "...", "value": "..."}
    }

* ``serial`` grows with every change; a reader refuses to go back to a lower one.
* A service's first key that is still valid is the one callers seal to; every
  listed key opens (its ``id`` is checked against the key).
* ``callers`` names the services that may call this one; without it, none may.
* ``signature``, when present, is an Ed25519 signature by a trust root over
  the document's canonical bytes (:func:`canonical_bytes`), which anyone can
  recompute: the document without ``signature``, as JSON with sorted keys, no
  white space, ASCII only (every string is printable ASCII and every number
  an integer, so there is one spelling).
"""

from __future__ import annotations

import base64
import binascii
import calendar
import json
import re
import time
from collections.abc import Mapping
from typing import Any, Optional

import attrs

from ..errors import ConfigurationError
from ..keyring import validate_service_name
from .keys import PublicKey

__all__ = [
    "FORMAT",
    "SCHEMA",
    "ServiceEntry",
    "TrustDocument",
    "TrustError",
    "canonical_bytes",
    "format_time",
    "parse",
]

FORMAT = "mscomm-trust"
SCHEMA = 1
_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z\Z")
_PRINTABLE = re.compile(r"[\x20-\x7e]*\Z")
_KID = re.compile(r"[0-9a-f]{16}\Z")


class TrustError(ConfigurationError):
    """The bytes are not a trust document this version accepts, or not one signed as pinned.

    A :class:`~mscomm_sync.errors.ConfigurationError` (so a ``ValueError`` too):
    the message says what is wrong, never quoting a key; ``reason`` is
    ``"invalid trust file"``.
    """

    def __init__(self, message: str, *, variable: Optional[str] = None) -> None:
        super().__init__(message, variable=variable, reason="invalid trust file")


@attrs.frozen
class ServiceEntry:
    """One service of a trust document.

    Attributes:
        keys: its public keys, the one to seal to first.
        callers: the services that may call it (``None``: the document does not say).
    """

    keys: tuple[PublicKey, ...]
    callers: Optional[frozenset[str]]


@attrs.frozen
class TrustDocument:
    """A parsed, validated trust document.

    Attributes:
        serial: its serial number.
        services: its entries by service name.
        signature: ``(root key id, signature bytes)``, or ``None`` if unsigned.
        raw: the parsed JSON, as read (to re-sign or edit).
    """

    serial: int
    services: Mapping[str, ServiceEntry]
    signature: Optional[tuple[str, bytes]]
    raw: Mapping[str, Any] = attrs.field(repr=False)


def canonical_bytes(document: Mapping[str, Any]) -> bytes:
    """Return the bytes a signature covers: the document without ``signature``, canonical JSON."""
    unsigned = {k: v for k, v in document.items() if k != "signature"}
    return json.dumps(unsigned, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def format_time(when: float) -> str:
    """Return ``when`` (Unix seconds) as the document writes times: ``YYYY-MM-DDTHH:MM:SSZ``."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(when)))


def parse(data: bytes) -> TrustDocument:
    """Parse and validate a trust document (the signature is checked elsewhere).

    Raises:
        TrustError: the bytes are not a valid document; the message says why.
    """
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise TrustError(f"not valid JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise TrustError(f"not a trust document (its 'format' must be {FORMAT!r})")
    if doc.get("version") != SCHEMA or isinstance(doc.get("version"), bool):
        raise TrustError(f"unsupported trust document version (this reads version {SCHEMA})")
    _check_plain(doc, "the document")
    serial = doc.get("serial", 0)
    if not isinstance(serial, int) or isinstance(serial, bool) or serial < 0:
        raise TrustError("'serial' must be a whole number >= 0")
    services = doc.get("services")
    if not isinstance(services, dict):
        raise TrustError("'services' must be an object")
    entries = {name: _entry(name, value) for name, value in services.items()}
    return TrustDocument(
        serial=serial, services=entries, signature=_signature(doc.get("signature")), raw=doc
    )


def _entry(name: str, value: Any) -> ServiceEntry:
    try:
        validate_service_name(name)
    except ValueError:
        raise TrustError(f"invalid service name {name[:64]!r}") from None
    if not isinstance(value, dict) or not isinstance(value.get("keys"), list):
        raise TrustError(f"service {name!r}: needs a 'keys' list")
    keys = tuple(_key(name, i, k) for i, k in enumerate(value["keys"]))
    callers = value.get("callers")
    if callers is not None:
        if not isinstance(callers, list):
            raise TrustError(f"service {name!r}: 'callers' must be a list of service names")
        for caller in callers:
            try:
                validate_service_name(caller)
            except ValueError:
                raise TrustError(f"service {name!r}: invalid caller name") from None
        callers = frozenset(callers)
    return ServiceEntry(keys=keys, callers=callers)


def _key(name: str, index: int, value: Any) -> PublicKey:
    where = f"service {name!r} key {index}"
    if not isinstance(value, dict) or not isinstance(value.get("public_key"), str):
        raise TrustError(f"{where}: needs a 'public_key'")
    try:
        key = PublicKey.from_text(value["public_key"], source=f"the trust file's {where}")
    except ValueError:
        raise TrustError(f"{where}: the public key does not parse") from None
    if value.get("id") != key.kid:
        raise TrustError(f"{where}: 'id' must be the key's id ({key.kid})")
    not_after = value.get("not_after")
    if not_after is not None:
        if not isinstance(not_after, str) or not _TIME.match(not_after):
            raise TrustError(f"{where}: 'not_after' must look like 2027-06-30T00:00:00Z")
        try:
            seconds = calendar.timegm(time.strptime(not_after, "%Y-%m-%dT%H:%M:%SZ"))
        except ValueError:
            raise TrustError(f"{where}: 'not_after' is not a date") from None
        key = PublicKey.from_bytes(key.raw, not_after=float(seconds))
    return key


def _signature(value: Any) -> Optional[tuple[str, bytes]]:
    if value is None:
        return None
    if not isinstance(value, dict) or value.get("algorithm") != "ed25519":
        raise TrustError("'signature' must be an ed25519 signature object")
    kid, text = value.get("key_id"), value.get("value")
    if not isinstance(kid, str) or not _KID.match(kid) or not isinstance(text, str):
        raise TrustError("'signature' needs a 'key_id' (16 hex digits) and a 'value'")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise TrustError("the signature is not base64") from None
    if len(raw) != 64:
        raise TrustError("an ed25519 signature is 64 bytes")
    return kid, raw


def _check_plain(value: Any, where: str) -> None:
    """Every string printable ASCII, every number a whole number: one canonical spelling."""
    if isinstance(value, str):
        if not _PRINTABLE.match(value):
            raise TrustError(f"{where}: strings must be printable ASCII")
    elif isinstance(value, bool) or value is None:
        return
    elif isinstance(value, float):
        raise TrustError(f"{where}: numbers must be whole")
    elif isinstance(value, dict):
        for k, v in value.items():
            _check_plain(k, where)
            _check_plain(v, where)
    elif isinstance(value, list):
        for v in value:
            _check_plain(v, where)
