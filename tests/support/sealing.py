"""Seal requests and open replies in tests, with the envelope alone (no client).

Requests are prepared with plain ``requests`` so the URL is encoded exactly as
a real client would send it, and the canonical target comes from that URL's
path below ``mount`` (the endpoint the client asked for).
"""

from __future__ import annotations

import base64
from typing import Optional
from urllib.parse import urlsplit

import attrs
import requests

from mscomm_sync.envelope import (
    HEADER_SEALED_BODY,
    Envelope,
    Opened,
    Sealed,
    target_from_endpoint,
)
from mscomm_sync.keyring import Keyring, generate_key

KEYS = {name: generate_key() for name in ("billing", "orders", "shipping")}


def keyring() -> Keyring:
    """Return a keyring holding the test services' keys."""
    return Keyring.from_mapping(KEYS)


@attrs.frozen
class Call:
    """One sealed request as sent, and the raw response that came back."""

    sealed: Sealed
    method: str
    target: str
    response: requests.Response


def prepare(
    url: str,
    *,
    method: str = "POST",
    body: bytes = b"",
    content_type: Optional[str] = "application/json",
    sender: str = "orders",
    recipient: str = "billing",
    headers: Optional[dict[str, str]] = None,
    ring: Optional[Keyring] = None,
    mount: str = "",
) -> tuple[requests.PreparedRequest, Sealed, str]:
    """Seal a request to ``url`` and return it prepared, with its seal and target.

    ``mount`` is where the service is mounted: the seal binds the path below it.
    """
    prepared = requests.Request(method, url, headers=headers or {}).prepare()
    assert prepared.url is not None
    parts = urlsplit(prepared.url)
    assert parts.path.startswith(mount)
    target = target_from_endpoint(parts.path[len(mount) :] or "/", parts.query)
    envelope = Envelope(sender, keyring=ring or keyring())
    sealed = envelope.seal_request(
        recipient=recipient, method=method, target=target, body=body, content_type=content_type
    )
    prepared.headers.update(sealed.headers)
    prepared.prepare_body(data=sealed.body, files=None)
    if not sealed.body and method in ("GET", "HEAD"):
        prepared.headers.pop("Content-Length", None)
    return prepared, sealed, target


def send(session: requests.Session, url: str, **kwargs: object) -> Call:
    """Seal a request to ``url``, send it and return the call (reply unopened)."""
    prepared, sealed, target = prepare(url, **kwargs)  # type: ignore[arg-type]
    response = session.send(prepared, timeout=30)
    assert prepared.method is not None
    return Call(sealed=sealed, method=prepared.method, target=target, response=response)


def open_reply(call: Call, *, sender: str = "billing", receiver: str = "orders") -> Opened:
    """Verify and open the reply of ``call``, as the caller would."""
    response = call.response
    body = response.content
    carried = response.headers.get(HEADER_SEALED_BODY)
    if carried is not None:
        body = base64.urlsafe_b64decode(carried + "=" * (-len(carried) % 4))
    return Envelope(receiver, keyring=keyring()).open_response(
        sender=sender,
        method=call.method,
        target=call.target,
        status=response.status_code,
        reply_to=call.sealed.message_id,
        headers=response.headers,
        body=body,
    )
