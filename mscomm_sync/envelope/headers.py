"""The envelope's header names and the one spelling of its seal header.

Everything that reads or writes ``X-Mscomm-Seal`` goes through
:func:`format_seal` and :func:`parse_seal`, so the form given in
``docs/protocol.md`` is checked in exactly one place.
"""

from __future__ import annotations

import re
from typing import NamedTuple, Optional

from .._fast import tuple_of

__all__ = [
    "COMMON_METHODS",
    "ENVELOPE_HEADERS",
    "HEADER_ENCRYPTED",
    "HEADER_SEAL",
    "HEADER_SEALED_BODY",
    "HEADER_SERVICE",
    "NOT_EXECUTED_CONTENT_TYPE",
    "SEALED_CONTENT_TYPE",
    "SealFields",
    "bound_method",
    "claimed_ids",
    "format_seal",
    "parse_seal",
]

SEALED_CONTENT_TYPE = "application/vnd.mscomm.sealed"
#: The sealed content type of the middleware's own 503 answer to a verified
#: request it did not run (its replay store began after the request was
#: sealed): the caller may seal the request again, whatever its method.
NOT_EXECUTED_CONTENT_TYPE = "application/vnd.mscomm.not-executed+json"
HEADER_ENCRYPTED = "X-Encrypted-Payload"
HEADER_SERVICE = "X-Encryption-Service"
#: Version, key id, timestamp, message id and sealed content type, in one
#: header: every header costs both sides parsing time on every call.
HEADER_SEAL = "X-Mscomm-Seal"
#: Carries the sealed body of an answer that HTTP forbids a body (HEAD, 204, 304).
HEADER_SEALED_BODY = "X-Mscomm-Sealed-Body"
ENVELOPE_HEADERS = (HEADER_ENCRYPTED, HEADER_SERVICE, HEADER_SEAL)

#: Methods already in the upper-case form bound into a seal, so the common
#: ones skip ``upper()`` and the regex (here and in the middleware).
COMMON_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})

_METHOD = re.compile(r"[A-Z]{1,16}\Z")
_SEAL = re.compile(
    r"v=1;kid=([0-9a-f]{16});ts=(0|[1-9][0-9]{0,11});id=([0-9a-f]{32});ct=([0-9a-f]{32,2080})\Z"
)
_SEAL_2 = re.compile(
    r"v=2;skid=([0-9a-f]{16});rkid=([0-9a-f]{16});ts=(0|[1-9][0-9]{0,11});id=([0-9a-f]{32})\Z"
)
_CLAIMED_KID = re.compile(r"(?:^|;)s?kid=([0-9a-f]{16})(?:;|$)")
_CLAIMED_MID = re.compile(r"(?:^|;)id=([0-9a-f]{32})(?:;|$)")


class SealFields(NamedTuple):
    """The fields of a well-formed seal header, as text.

    Attributes:
        version: ``"1"`` or ``"2"``.
        kid: v1, the sender's key id; v2, the pair ``<sender kid>-<recipient kid>``.
        timestamp: Unix seconds, decimal.
        message_id: 32 hex digits.
        sealed_content_type: v1, the sealed content type in hex; v2, empty.
    """

    version: str
    kid: str
    timestamp: str
    message_id: str
    sealed_content_type: str

    @property
    def sender_kid(self) -> str:
        """The sender's key id (in v2, the first half of the pair)."""
        return self.kid[:16]

    @property
    def recipient_kid(self) -> str:
        """The recipient's key id (v2 only; empty in v1)."""
        return self.kid[17:]


def format_seal(version: str, kid: str, timestamp: str, message_id: str, sealed_ct: str) -> str:
    """Return the value of ``X-Mscomm-Seal`` for these fields.

    v1: ``kid`` is the sender's key id and ``sealed_ct`` the sealed content
    type in hex; v2: ``kid`` is the pair ``<sender kid>-<recipient kid>``.
    """
    if version == "2":
        sender, _, recipient = kid.partition("-")
        return f"v=2;skid={sender};rkid={recipient};ts={timestamp};id={message_id}"
    return f"v={version};kid={kid};ts={timestamp};id={message_id};ct={sealed_ct}"


def parse_seal(value: str) -> Optional[SealFields]:
    """Return the fields of a seal header in exactly the form the protocol gives, or ``None``.

    The v1 sealed content type is lower-case hex of even length, so it has
    one spelling only.
    """
    if value.startswith("v=2;"):
        two = _SEAL_2.match(value)
        if two is None:
            return None
        skid, rkid, ts, mid = two.groups()
        return tuple_of(SealFields, ("2", f"{skid}-{rkid}", ts, mid, ""))
    fields = _SEAL.match(value)
    if fields is None or len(fields.group(4)) & 1:
        return None
    kid, ts, mid, ct = fields.groups()
    return tuple_of(SealFields, ("1", kid, ts, mid, ct))


def seal_version(value: str) -> str:
    """Return the ``v=`` field a seal header starts with (for the log: unsupported or malformed)."""
    return value.partition(";")[0]


def bound_method(method: object) -> Optional[str]:
    """Return ``method`` in the upper-case form a seal binds, or ``None`` if it is not a method.

    A method is 1 to 16 letters.
    """
    if type(method) is str:
        if method in COMMON_METHODS:
            return method  # the usual case, in one check
    elif not isinstance(method, str):
        return None
    upper = method.upper()
    return upper if _METHOD.match(upper) else None


def claimed_ids(seal: Optional[str]) -> tuple[Optional[str], Optional[str]]:
    """Return the key id and message id an unverified seal header claims.

    For logging refusals only: each value is returned only if it has the
    right form (hex of the right length), so nothing else from the network
    reaches a log line.
    """
    kid = _CLAIMED_KID.search(seal or "")
    mid = _CLAIMED_MID.search(seal or "")
    return (kid.group(1) if kid else None, mid.group(1) if mid else None)
