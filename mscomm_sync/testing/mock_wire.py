"""How a mocked service's answers look on the wire: the middleware's own shapes.

The mocked service reuses the middleware's response helpers, so a sealed
reply, a bodiless sealed reply (``HEAD``, 204, 304) and a refusal are
byte-for-byte what a real service sends.
"""

from __future__ import annotations

from ..envelope import Envelope, Opened, Sealed
from ..envelope.fields import sealable
from ..wsgi.response import (
    BODILESS_STATUSES,
    app_headers,
    refusal,
    sealed_headers,
    sealed_response,
    without_envelope_headers,
)
from .mock_types import MockReply

__all__ = ["Wire", "plaintext", "refused", "sealed"]

#: A status, headers and body, ready for ``responses``.
Wire = tuple[int, list[tuple[str, str]], bytes]


def refused(status: int) -> Wire:
    """Return the middleware's fixed, unsealed refusal for ``status`` (401, 403 ...)."""
    _line, headers, chunks = refusal(status)
    return status, headers, b"".join(chunks)


def plaintext(reply: MockReply) -> Wire:
    """Return ``reply`` unsealed, as a service with ``encrypt_responses=False`` sends it."""
    headers = without_envelope_headers(reply.headers.items())
    if reply.content_type is not None:
        headers.append(("Content-Type", reply.content_type))
    return reply.status, headers, reply.body


def sealed(
    envelope: Envelope,
    opened: Opened,
    *,
    method: str,
    target: str,
    reply: MockReply,
    tamper: bool = False,
) -> Wire:
    """Return ``reply`` sealed for the request ``opened``, as the middleware seals it.

    Args:
        envelope: the mocked service's envelope.
        opened: the verified request being answered.
        method: the request's method.
        target: the request's canonical target.
        reply: the plaintext reply.
        tamper: flip one bit of the sealed body, as an attacker might.
    """
    status = reply.status
    bodiless = method == "HEAD" or status < 200 or status in BODILESS_STATUSES
    v2 = opened.version == "2"  # answered in the request's version; v2 seals the headers
    kept, _content_type = app_headers(reply.headers.items())
    seal = envelope.seal_response(
        recipient=opened.sender,
        method=method,
        target=target,
        status=status,
        reply_to=opened.message_id,
        body=b"" if bodiless else reply.body,
        content_type=reply.content_type,
        headers=sealable(kept) if v2 else None,
        request=opened,
    )
    if tamper:
        seal = Sealed(
            seal.headers,
            bytes([seal.body[0] ^ 0x01]) + seal.body[1:],
            seal.message_id,
            seal.timestamp,
            seal.version,
            seal.pair,
        )
    if v2:
        headers, chunks = sealed_headers([], seal, status, bodiless=bodiless)
    else:
        headers, chunks = sealed_response(
            f"{status} -", reply.headers.items(), seal, bodiless=bodiless
        )
    return status, headers, b"".join(chunks)
