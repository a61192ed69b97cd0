#!/usr/bin/env python3
"""Regenerate docs/test-vectors.json: worked examples of the sealed envelope, v1 and v2.

Every input is fixed (keys, message ids, timestamps, plaintexts), so the output
is byte-for-byte deterministic. Messages are sealed by the package itself:
message ids are pinned by replacing the envelope's ``sealing.new_message_id``
while sealing, and every clock is a constant. The answers HTTP gives no body
(to HEAD, 204, 304) are put on the wire by the middleware's own
``sealed_headers``.

The document holds, in this order: the v1 keys and vectors (the first four
are the original vectors, kept byte for byte), the v2 keys, vectors and a
signed trust file, and the refusals: messages of either version, each changed
in one way from a vector, that a receiver must refuse, with the reason.

Usage:
    python scripts/make_test_vectors.py            # rewrite docs/test-vectors.json
    python scripts/make_test_vectors.py --check    # exit 1 if the file is out of date
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Optional
from unittest import mock

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402
from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: E402
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat  # noqa: E402

from mscomm_sync import envelope  # noqa: E402
from mscomm_sync.envelope import Envelope, target_from_endpoint  # noqa: E402
from mscomm_sync.envelope import sealing as envelope_core  # noqa: E402
from mscomm_sync.envelope.crypto import (  # noqa: E402
    BODY_NONCE,
    META_NONCE,
    VERSION_2,
    derive_pair_key,
    message_aad,
)
from mscomm_sync.envelope.fields import (  # noqa: E402
    decode_varint,
    encode_section,
    encode_varint,
    sealable,
)
from mscomm_sync.envelope.headers import format_seal  # noqa: E402
from mscomm_sync.envelope.messages import Binding, Opened  # noqa: E402
from mscomm_sync.keyring import Key, Keyring, variable_name  # noqa: E402
from mscomm_sync.trust import Identity, PrivateKey, TrustStore  # noqa: E402
from mscomm_sync.trust.document import canonical_bytes, parse  # noqa: E402
from mscomm_sync.trust.signing import sign  # noqa: E402
from mscomm_sync.wsgi.response import NOT_EXECUTED, sealed_headers  # noqa: E402

OUTPUT = ROOT / "docs" / "test-vectors.json"

# Fixed, obviously non-secret keys: bytes 0x00..0x1f and 0x20..0x3f.
RAW_KEYS = {
    "orders": bytes(range(0x00, 0x20)),
    "billing": bytes(range(0x20, 0x40)),
}
#: v1: the key orders rotates to (the rotation vector's receiver holds it first).
RAW_NEXT_ORDERS = bytes(range(0xC0, 0xE0))
#: v2: each service's X25519 private keys, the current one first. billing is
#: rotating: its previous key still opens what was sealed to it.
RAW_V2_KEYS = {
    "orders": [bytes(range(0x40, 0x60))],
    "billing": [bytes(range(0x60, 0x80)), bytes(range(0x80, 0xA0))],
    "ledger": [bytes(range(0xA0, 0xC0))],
}
#: The Ed25519 trust root that signs the example trust file.
RAW_ROOT = bytes(range(0xE0, 0x100))

REQUEST_ID = "00112233445566778899aabbccddeeff"
BODILESS_STATUSES = (204, 304)
HEADER_SEALED_BODY = "X-Mscomm-Sealed-Body"


def mid(name: str) -> str:
    """A fixed message id for a new vector: the first 32 hex digits of SHA-256 of its name."""
    return hashlib.sha256(b"mscomm-sync test vector " + name.encode()).hexdigest()[:32]


# -- the facts of each vector --------------------------------------------------------

# v1: what a caller passes to seal_request / seal_response. The first four are
# the original vectors: their output must not change.
CASES: list[dict[str, Any]] = [
    {
        "name": "request-post-json",
        "description": "A POST with a JSON body from orders to billing.",
        "direction": "request",
        "sender": "orders",
        "recipient": "billing",
        "method": "POST",
        "instance": "http://billing.internal:8000",
        "endpoint": "/invoices?customer=42",
        "timestamp": 1_700_000_000,
        "message_id": REQUEST_ID,
        "content_type": "application/json",
        "plaintext": b'{"amount": 1250, "currency": "EUR"}',
    },
    {
        "name": "request-get-no-body",
        "description": "A GET with no body and no content type; still sealed (16-byte tag).",
        "direction": "request",
        "sender": "orders",
        "recipient": "billing",
        "method": "GET",
        "instance": "http://10.0.0.7:8000",
        "endpoint": "/invoices/7?expand=lines",
        "timestamp": 1_700_000_005,
        "message_id": "0f1e2d3c4b5a69788796a5b4c3d2e1f0",
        "content_type": None,
        "plaintext": b"",
    },
    {
        "name": "response-created-json",
        "description": "billing's 201 answer to request-post-json, sealed under billing's key.",
        "direction": "response",
        "sender": "billing",
        "recipient": "orders",
        "method": "POST",
        "instance": "http://billing.internal:8000",
        "endpoint": "/invoices?customer=42",
        "timestamp": 1_700_000_001,
        "message_id": "ffeeddccbbaa99887766554433221100",
        "status": 201,
        "reply_to": REQUEST_ID,
        "content_type": "application/json; charset=utf-8",
        "plaintext": b'{"id": 7, "status": "open"}',
    },
    {
        "name": "request-put-non-ascii-target",
        "description": (
            "A PUT to an instance reached under /prefix, with a space, non-ASCII and an "
            "escaped '&' in the endpoint; shows the canonical target, which binds the "
            "endpoint and not the instance's path."
        ),
        "direction": "request",
        "sender": "orders",
        "recipient": "billing",
        "method": "PUT",
        "instance": "http://billing.internal/prefix",
        "endpoint": "/caf%C3%A9/menu%20du%20jour?q=%C3%A9t%C3%A9&x=a%26b",
        "timestamp": 1_700_000_100,
        "message_id": "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf",
        "content_type": "text/plain; charset=utf-8",
        "plaintext": "crème brûlée\n".encode(),
    },
]


def _exchange(
    version: str, prefix: str, start: int, method: str, endpoint: str, answer: dict[str, Any]
) -> list[dict[str, Any]]:
    """A request from orders to billing and billing's answer to it, one second later."""
    request_name = f"{prefix}request-{answer.pop('request_suffix')}"
    response_name = f"{prefix}response-{answer.pop('response_suffix')}"
    request: dict[str, Any] = {
        "name": request_name,
        "description": answer.pop("request_description"),
        "version": version,
        "direction": "request",
        "sender": "orders",
        "recipient": "billing",
        "method": method,
        "instance": "http://billing.internal:8000",
        "endpoint": endpoint,
        "timestamp": start,
        "message_id": mid(request_name),
        "content_type": answer.pop("request_content_type", None),
        "plaintext": answer.pop("request_plaintext", b""),
        "sealed_headers": answer.pop("request_headers", []),
    }
    response: dict[str, Any] = {
        "name": response_name,
        "version": version,
        "direction": "response",
        "sender": "billing",
        "recipient": "orders",
        "method": method,
        "instance": request["instance"],
        "endpoint": endpoint,
        "timestamp": start + 1,
        "message_id": mid(response_name),
        "reply_to": request["message_id"],
        "plaintext": b"",
        "content_type": None,
        "sealed_headers": [],
    }
    response.update(answer)
    if "sealed_to" in answer:  # which of billing's keys the pair uses, both ways
        request["sealed_to"] = answer["sealed_to"]
    return [request, response]


def _bodiless_exchanges(version: str, prefix: str, start: int) -> list[dict[str, Any]]:
    """HEAD, 204 and 304: answers sent without a body, their seal in a header."""
    v2 = version == VERSION_2
    return [
        *_exchange(
            version,
            prefix,
            start,
            "HEAD",
            "/invoices/7",
            {
                "request_suffix": "head",
                "response_suffix": "head-bodiless",
                "request_description": "A HEAD request; like every request it has a sealed body.",
                "description": (
                    "billing's 200 answer to the HEAD request: an empty plaintext is sealed "
                    "(the content type still is), sent with no body and Content-Length: 0, "
                    "its sealed body in X-Mscomm-Sealed-Body."
                ),
                "status": 200,
                "content_type": "application/json",
                "sealed_headers": [("etag", '"7"')] if v2 else [],
            },
        ),
        *_exchange(
            version,
            prefix,
            start + 100,
            "DELETE",
            "/invoices/7",
            {
                "request_suffix": "delete",
                "response_suffix": "no-content",
                "request_description": "A DELETE with no body.",
                "description": (
                    "billing's 204 answer to the DELETE: no body, no Content-Length, the "
                    "sealed body in X-Mscomm-Sealed-Body."
                ),
                "status": 204,
                "sealed_headers": [("cache-control", "no-store")] if v2 else [],
            },
        ),
        *_exchange(
            version,
            prefix,
            start + 200,
            "GET",
            "/invoices/7",
            {
                "request_suffix": "get-conditional",
                "response_suffix": "not-modified",
                "request_description": (
                    "A conditional GET; in v2 its If-None-Match travels sealed."
                    if v2
                    else "A GET (in v1 any If-None-Match would travel in clear, unbound)."
                ),
                "request_headers": [("if-none-match", '"7"')] if v2 else [],
                "description": (
                    "billing's 304 answer: no body, no Content-Length, the sealed body in "
                    "X-Mscomm-Sealed-Body."
                ),
                "status": 304,
                "sealed_headers": [("etag", '"7"'), ("cache-control", "max-age=60")] if v2 else [],
            },
        ),
    ]


CASES += _bodiless_exchanges("1", "", 1_700_000_200)
CASES.append(
    {
        "name": "request-rotation-older-key",
        "description": (
            "orders is rotating its key: the receiver holds ORDERS_ENCRYPTION_KEY=<new>,<old> "
            "(receiver_keys) and this request, still sealed with the old key, names the old "
            "key id; it opens with that key, no other is tried."
        ),
        "direction": "request",
        "sender": "orders",
        "recipient": "billing",
        "method": "POST",
        "instance": "http://billing.internal:8000",
        "endpoint": "/invoices/7/pay",
        "timestamp": 1_700_000_500,
        "message_id": mid("request-rotation-older-key"),
        "content_type": "application/json",
        "plaintext": b'{"paid": true}',
        "receiver_keys": "rotation",
    }
)

V2_CASES: list[dict[str, Any]] = [
    *_exchange(
        "2",
        "v2-",
        1_700_001_000,
        "POST",
        "/invoices?customer=42",
        {
            "request_suffix": "post-json",
            "response_suffix": "created-json",
            "request_description": (
                "A POST with a JSON body and several end-to-end headers, sealed with it "
                "(the repeated x-note keeps its order)."
            ),
            "request_content_type": "application/json",
            "request_plaintext": b'{"amount": 1250, "currency": "EUR"}',
            "request_headers": [
                ("accept", "application/json"),
                ("idempotency-key", "order-1042-charge"),
                ("x-request-id", "4bf92f3577b34da6"),
                ("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
                ("x-note", "first"),
                ("x-note", "second"),
            ],
            "description": "billing's 201 answer, its headers sealed, with the request's pair.",
            "status": 201,
            "content_type": "application/json; charset=utf-8",
            "plaintext": b'{"id": 7, "status": "open"}',
            "sealed_headers": [
                ("location", "/invoices/7"),
                ("etag", '"1"'),
                ("cache-control", "no-store"),
            ],
        },
    ),
    {
        "name": "v2-request-get-no-body",
        "description": "A GET with no body, content type or headers: an empty field section.",
        "version": "2",
        "direction": "request",
        "sender": "orders",
        "recipient": "billing",
        "method": "GET",
        "instance": "http://10.0.0.7:8000",
        "endpoint": "/invoices/7?expand=lines",
        "timestamp": 1_700_001_005,
        "message_id": mid("v2-request-get-no-body"),
        "content_type": None,
        "plaintext": b"",
        "sealed_headers": [],
    },
    *_bodiless_exchanges("2", "v2-", 1_700_001_100),
    *_exchange(
        "2",
        "v2-",
        1_700_001_400,
        "GET",
        "/invoices/9",
        {
            "request_suffix": "rotation-older-key",
            "response_suffix": "rotation-older-key",
            "request_description": (
                "billing is rotating: it holds two private keys, and orders, which has not yet "
                "seen billing's new public key, seals to the previous one: rkid names billing's "
                "older key, and billing opens with exactly that key."
            ),
            "description": (
                "billing's answer to that request: sealed with the request's pair, so with "
                "billing's older key (skid), although billing seals its own requests with its "
                "new one."
            ),
            "status": 200,
            "content_type": "application/json",
            "plaintext": b'{"id": 9, "status": "paid"}',
            "sealed_to": 1,
        },
    ),
    {
        "name": "v2-response-not-executed",
        "description": (
            "billing's sealed 503 to v2-request-post-json when billing's replay store began "
            "(1700001001) after the request was sealed (1700001000): authentic, not run; the "
            "caller may seal it again, whatever its method (refusal v2-not-executed)."
        ),
        "version": "2",
        "direction": "response",
        "sender": "billing",
        "recipient": "orders",
        "method": "POST",
        "instance": "http://billing.internal:8000",
        "endpoint": "/invoices?customer=42",
        "timestamp": 1_700_001_001,
        "message_id": mid("v2-response-not-executed"),
        "reply_to": mid("v2-request-post-json"),
        "status": NOT_EXECUTED.code,
        "content_type": NOT_EXECUTED.content_type,
        "plaintext": NOT_EXECUTED.body,
        "sealed_headers": sealable(NOT_EXECUTED.headers),
    },
]


# -- helpers -------------------------------------------------------------------------


def endpoint_target(endpoint: str) -> str:
    """The canonical target of an endpoint (its path and query)."""
    path, _, query = endpoint.partition("?")
    return target_from_endpoint(path, query)


def key_text(raw: bytes) -> str:
    """Encode a key the way ``mscomm keygen`` prints it."""
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def b64(data: bytes) -> str:
    """URL-safe base64 without padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@contextmanager
def pinned(message_id: str) -> Iterator[None]:
    """Make the envelope draw ``message_id`` as its next message ids."""
    raw = bytes.fromhex(message_id)
    with mock.patch.object(envelope_core, "new_message_id", lambda: raw):
        yield


def at(timestamp: int) -> Callable[[], float]:
    """A clock stopped at ``timestamp``."""
    return lambda: float(timestamp)


def sealed_body_header(case: dict[str, Any], sealed: envelope.Sealed) -> Optional[str]:
    """The X-Mscomm-Sealed-Body the middleware sends for ``case``, if it is a bodiless answer."""
    status = case.get("status")
    if case["direction"] != "response" or status is None:
        return None
    if not (case["method"] == "HEAD" or status < 200 or status in BODILESS_STATUSES):
        return None
    headers, body = sealed_headers([], sealed, status, bodiless=True)
    if body != []:
        raise AssertionError("a bodiless answer was given a body")
    return dict(headers)[HEADER_SEALED_BODY]


# -- v1 ------------------------------------------------------------------------------


def v1_receiver_keys() -> dict[str, str]:
    """What the rotation vector's receiver holds: orders' new key first, then its old one."""
    return {
        "orders": f"{key_text(RAW_NEXT_ORDERS)},{key_text(RAW_KEYS['orders'])}",
        "billing": key_text(RAW_KEYS["billing"]),
    }


def seal(case: dict[str, Any], ring: Keyring) -> envelope.Sealed:
    """Seal one case with its pinned message id and timestamp."""
    sender = Envelope(
        case["sender"],
        keyring=ring,
        identity=Identity(case["sender"], environ={}),
        trust=TrustStore(environ={}),
        clock=at(case["timestamp"]),
    )
    target = endpoint_target(case["endpoint"])
    with pinned(case["message_id"]):
        if case["direction"] == "request":
            return sender.seal_request(
                recipient=case["recipient"],
                method=case["method"],
                target=target,
                body=case["plaintext"],
                content_type=case["content_type"],
            )
        return sender.seal_response(
            recipient=case["recipient"],
            method=case["method"],
            target=target,
            status=case["status"],
            reply_to=case["reply_to"],
            body=case["plaintext"],
            content_type=case["content_type"],
        )


def vector(case: dict[str, Any], ring: Keyring) -> dict[str, Any]:
    """Return the JSON object of one v1 test vector."""
    sealed = seal(case, ring)
    key = ring.keys_for(case["sender"]).sealing
    seal_header = sealed.headers[envelope.HEADER_SEAL]
    expected_prefix = (
        f"v={envelope.VERSION};kid={key.kid};ts={case['timestamp']};id={case['message_id']};ct="
    )
    if not seal_header.startswith(expected_prefix):  # the vectors must show the documented form
        raise AssertionError(f"unexpected seal header {seal_header!r}")
    target = endpoint_target(case["endpoint"])
    status: Optional[int] = case.get("status")
    reply_to: str = case.get("reply_to", "")
    aad = envelope.associated_data(
        kid=key.kid,
        direction=case["direction"],
        sender=case["sender"],
        recipient=case["recipient"],
        method=case["method"],
        target=target,
        timestamp=case["timestamp"],
        message_id=case["message_id"],
        status=status,
        reply_to=reply_to,
    )
    out = {
        "name": case["name"],
        "description": case["description"],
        "direction": case["direction"],
        "sender": case["sender"],
        "recipient": case["recipient"],
        "method": case["method"],
        "instance_url": case["instance"],
        "endpoint": case["endpoint"],
        "url": case["instance"] + case["endpoint"],
        "target": target,
        "timestamp": case["timestamp"],
        "message_id": case["message_id"],
        "status": status,
        "reply_to": reply_to,
        "content_type": case["content_type"],
        "plaintext_hex": case["plaintext"].hex(),
        "key_id": key.kid,
        "message_key_hex": envelope.derive_message_key(
            key.secret, bytes.fromhex(case["message_id"])
        ).hex(),
        "associated_data_hex": aad.hex(),
        "headers": dict(sealed.headers),
        "body_hex": sealed.body.hex(),
    }
    # Fields only the later vectors need, after the original ones (which stay as they were).
    if case.get("receiver_keys") == "rotation":
        out["receiver_keys"] = v1_receiver_keys()
    carried = sealed_body_header(case, sealed)
    if carried is not None:
        out["sealed_body_header"] = carried
    return out


# -- v2 ------------------------------------------------------------------------------


def v2_keys() -> dict[str, list[PrivateKey]]:
    """Each service's v2 private keys, the current one first."""
    return {
        name: [PrivateKey.from_bytes(raw) for raw in raws] for name, raws in RAW_V2_KEYS.items()
    }


def v2_envelope(name: str, trusted: dict[str, list[PrivateKey]], timestamp: int) -> Envelope:
    """``name``'s v2 envelope: all its private keys, and the public keys ``trusted`` lists."""
    environ = {
        variable_name(peer, "PUBLIC_KEY"): ",".join(k.public.text for k in keys)
        for peer, keys in trusted.items()
    }
    return Envelope(
        name,
        keyring=Keyring.from_mapping({}),
        identity=Identity(name, keys=v2_keys()[name]),
        trust=TrustStore(environ=environ),
        versions={VERSION_2},
        clock=at(timestamp),
    )


def v2_pair(case: dict[str, Any]) -> tuple[PrivateKey, PrivateKey]:
    """The sender's and recipient's keys of a v2 case (``sealed_to``: which of billing's)."""
    keys = v2_keys()
    billing = keys["billing"][case.get("sealed_to", 0)]
    orders = keys["orders"][0]
    return (orders, billing) if case["sender"] == "orders" else (billing, orders)


def seal_v2_case(case: dict[str, Any]) -> envelope.Sealed:
    """Seal one v2 case with the package, its message id and clock pinned."""
    own, peer = v2_pair(case)
    target = endpoint_target(case["endpoint"])
    headers = [tuple(h) for h in case["sealed_headers"]]
    if case["direction"] == "request":
        sender = v2_envelope(case["sender"], {case["recipient"]: [peer]}, case["timestamp"])
        with pinned(case["message_id"]):
            return sender.seal_request(
                recipient=case["recipient"],
                method=case["method"],
                target=target,
                body=case["plaintext"],
                content_type=case["content_type"],
                headers=headers,
            )
    keys = v2_keys()
    sender = v2_envelope(
        case["sender"], {case["recipient"]: keys[case["recipient"]]}, case["timestamp"]
    )
    # The request this answers, as the middleware holds it once opened.
    request = Opened._make(
        case["recipient"],
        b"",
        None,
        case["reply_to"],
        f"{peer.kid}-{own.kid}",
        case["timestamp"] - 1,
        VERSION_2,
        (),
    )
    with pinned(case["message_id"]):
        return sender.seal_response(
            recipient=case["recipient"],
            method=case["method"],
            target=target,
            status=case["status"],
            reply_to=case["reply_to"],
            body=case["plaintext"],
            content_type=case["content_type"],
            headers=headers,
            request=request,
        )


def v2_vector(case: dict[str, Any]) -> dict[str, Any]:
    """Return the JSON object of one v2 test vector, with every intermediate value."""
    sealed = seal_v2_case(case)
    own, peer = v2_pair(case)
    target = endpoint_target(case["endpoint"])
    status: Optional[int] = case.get("status")
    reply_to: str = case.get("reply_to", "")
    pair = f"{own.kid}-{peer.kid}"
    seal_header = sealed.headers[envelope.HEADER_SEAL]
    expected = f"v=2;skid={own.kid};rkid={peer.kid};ts={case['timestamp']};id={case['message_id']}"
    if seal_header != expected:
        raise AssertionError(f"unexpected seal header {seal_header!r}")
    shared = own.exchange(peer.public)
    pair_key = derive_pair_key(
        shared, (case["sender"], own.public.raw), (case["recipient"], peer.public.raw)
    )
    message_id = bytes.fromhex(case["message_id"])
    binding = Binding._make(
        case["direction"],
        case["sender"],
        case["recipient"],
        case["method"],
        target,
        "" if status is None else str(status),
        reply_to,
    )
    aad = message_aad(VERSION_2, pair, binding, str(case["timestamp"]), case["message_id"])
    headers = [tuple(h) for h in case["sealed_headers"]]
    section = encode_section(case["content_type"], headers)
    body = sealed.body
    length, offset = decode_varint(body, 0)
    out: dict[str, Any] = {
        "name": case["name"],
        "description": case["description"],
        "version": VERSION_2,
        "direction": case["direction"],
        "sender": case["sender"],
        "recipient": case["recipient"],
        "method": case["method"],
        "instance_url": case["instance"],
        "endpoint": case["endpoint"],
        "url": case["instance"] + case["endpoint"],
        "target": target,
        "timestamp": case["timestamp"],
        "message_id": case["message_id"],
        "status": status,
        "reply_to": reply_to,
        "content_type": case["content_type"],
        "sealed_headers": [list(h) for h in headers],
        "plaintext_hex": case["plaintext"].hex(),
        "sender_key_id": own.kid,
        "recipient_key_id": peer.kid,
        "shared_secret_hex": shared.hex(),
        "pair_key_hex": pair_key.hex(),
        "message_key_hex": envelope.derive_message_key(pair_key, message_id, VERSION_2).hex(),
        "associated_data_hex": aad.hex(),
        "field_section_hex": section.hex(),
        "sealed_fields_hex": body[offset : offset + length].hex(),
        "ciphertext_hex": body[offset + length :].hex(),
        "headers": dict(sealed.headers),
        "body_hex": body.hex(),
    }
    carried = sealed_body_header(case, sealed)
    if carried is not None:
        out["sealed_body_header"] = carried
    return out


def v2_key_table() -> dict[str, list[dict[str, str]]]:
    """The v2 keys: for each service its key pairs, the current one first."""
    return {
        name: [
            {"private_key": k.text(), "public_key": k.public.text, "key_id": k.kid} for k in keys
        ]
        for name, keys in v2_keys().items()
    }


def trust_file() -> dict[str, Any]:
    """A trust file for the v2 keys, signed by a fixed root, with its canonical bytes."""
    root = Ed25519PrivateKey.from_private_bytes(RAW_ROOT)
    root_public = root.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    keys = v2_keys()

    def entry(k: PrivateKey, not_after: Optional[str] = None) -> dict[str, str]:
        item = {"id": k.kid, "public_key": k.public.text}
        if not_after is not None:
            item["not_after"] = not_after
        return item

    document = {
        "format": "mscomm-trust",
        "version": 1,
        "serial": 7,
        "services": {
            "billing": {
                "callers": ["orders"],
                "keys": [
                    entry(keys["billing"][0]),
                    entry(keys["billing"][1], "2024-01-01T00:00:00Z"),
                ],
            },
            "ledger": {"callers": ["billing"], "keys": [entry(keys["ledger"][0])]},
            "orders": {"keys": [entry(keys["orders"][0])]},
        },
    }
    signed = sign(document, key_text(RAW_ROOT), source="the test vectors' root")
    parse(json.dumps(signed).encode())  # the package reads what it wrote
    return {
        "root_private_key": key_text(RAW_ROOT),
        "root_public_key": key_text(root_public),
        "root_key_id": signed["signature"]["key_id"],
        "document": document,
        "canonical": canonical_bytes(document).decode("ascii"),
        "signed": signed,
    }


# -- refusals ------------------------------------------------------------------------


def wire(vec: dict[str, Any]) -> tuple[dict[str, str], bytes]:
    """The headers and body a vector travels with (a bodiless answer's body is in a header)."""
    headers = dict(vec["headers"])
    if "sealed_body_header" in vec:
        headers[HEADER_SEALED_BODY] = vec["sealed_body_header"]
        return headers, b""
    return headers, bytes.fromhex(vec["body_hex"])


def delivery(vec: dict[str, Any]) -> dict[str, Any]:
    """What the receiver of ``vec`` is given, and knows, when it arrives unchanged."""
    version = vec.get("version", "1")
    headers, body = wire(vec)
    out: dict[str, Any] = {
        "version": version,
        "based_on": vec["name"],
        "direction": vec["direction"],
        "receiver": vec["recipient"],
        "receiver_time": vec["timestamp"],
        "method": vec["method"],
        "target": vec["target"],
    }
    if vec["direction"] == "response":
        out["status"] = vec["status"]
        out["reply_to"] = vec["reply_to"]
        out["expected_sender"] = vec["sender"]
        out["request_version"] = version
        out["request_pair"] = (
            f"{vec['recipient_key_id']}-{vec['sender_key_id']}" if version == VERSION_2 else None
        )
    out["headers"] = headers
    out["body_hex"] = body.hex()
    return out


def with_seal(headers: dict[str, str], old: str, new: str) -> dict[str, str]:
    """``headers`` with ``old`` replaced by ``new`` in the seal header (exactly once)."""
    seal = headers[envelope.HEADER_SEAL]
    if seal.count(old) != 1:
        raise AssertionError(f"{old!r} is not once in {seal!r}")
    return dict(headers, **{envelope.HEADER_SEAL: seal.replace(old, new)})


def flipped(body_hex: str, index: int) -> str:
    """``body_hex`` with the low bit of byte ``index`` flipped."""
    body = bytearray.fromhex(body_hex)
    body[index] ^= 0x01
    return body.hex()


def insider_forgery(vec: dict[str, Any]) -> tuple[str, bytes]:
    """ledger, holding its own private key and every public key, forges ``vec`` as orders.

    It claims orders' key id and derives the pair key the only way it can,
    from its own X25519 secret with billing; billing derives another.
    """
    keys = v2_keys()
    ledger, orders, billing = keys["ledger"][0], keys["orders"][0], keys["billing"][0]
    pair = f"{orders.kid}-{billing.kid}"
    shared = ledger.exchange(billing.public)
    pair_key = derive_pair_key(
        shared, ("orders", orders.public.raw), ("billing", billing.public.raw)
    )
    message_id = bytes.fromhex(vec["message_id"])
    ts = str(vec["timestamp"])
    binding = Binding._make("request", "orders", "billing", vec["method"], vec["target"], "", "")
    aad = message_aad(VERSION_2, pair, binding, ts, vec["message_id"])
    aead = AESGCM(envelope.derive_message_key(pair_key, message_id, VERSION_2))
    section = encode_section(vec["content_type"], [tuple(h) for h in vec["sealed_headers"]])
    head = aead.encrypt(META_NONCE, section, aad)
    body = encode_varint(len(head)) + head
    body += aead.encrypt(BODY_NONCE, b'{"amount": 999999, "currency": "EUR"}', aad)
    return format_seal(VERSION_2, pair, ts, vec["message_id"], ""), body


def refusals(by_name: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Every refusal case: a vector changed in one way, and why its receiver refuses it."""
    out: list[dict[str, Any]] = []
    v2_kids = {name: [k["key_id"] for k in keys] for name, keys in v2_key_table().items()}
    new_orders_kid = Key.from_text(key_text(RAW_NEXT_ORDERS), source="orders").kid

    def add(
        name: str, base: str, change: str, reason: str, *, http_status: int = 401, **edits: Any
    ) -> None:
        item = delivery(by_name[base])
        item.update(edits)
        if item["direction"] == "request":  # a reflected answer: no longer awaited as one
            for key in ("status", "reply_to", "expected_sender", "request_version", "request_pair"):
                item.pop(key, None)
        server = item["direction"] == "request"
        out.append(
            {
                "name": name,
                "description": change,
                **item,
                "refused_by": "server" if server else "client",
                "http_status": http_status if server else None,
                "reason": reason,
            }
        )

    def headers_of(base: str, **changes: str) -> dict[str, str]:
        return dict(wire(by_name[base])[0], **changes)

    def body_of(base: str) -> str:
        return wire(by_name[base])[1].hex()

    # -- v1 requests (a server answers each with 401)
    v1 = "request-post-json"
    add(
        "v1-refused-unknown-key-id",
        v1,
        "The seal names orders' new key, which this receiver does not hold yet "
        "(the new key was used before it was distributed).",
        "unknown key id",
        headers=with_seal(headers_of(v1), by_name[v1]["key_id"], new_orders_kid),
    )
    add(
        "v1-refused-flipped-ciphertext-byte",
        v1,
        "One bit of the body's first byte is flipped.",
        "bad tag",
        body_hex=flipped(body_of(v1), 0),
    )
    add(
        "v1-refused-changed-target",
        v1,
        "Delivered to another query (customer=43) than it was sealed for.",
        "bad tag",
        target="/invoices?customer=43",
    )
    add(
        "v1-refused-changed-method",
        v1,
        "Delivered as a PUT; it was sealed as a POST.",
        "bad tag",
        method="PUT",
    )
    add(
        "v1-refused-stale-past",
        v1,
        "Opened 61 s after it was sealed, with the 60 s window.",
        "stale timestamp",
        receiver_time=by_name[v1]["timestamp"] + 61,
    )
    add(
        "v1-refused-stale-future",
        v1,
        "Opened 61 s before its timestamp (the sender's clock runs ahead).",
        "stale timestamp",
        receiver_time=by_name[v1]["timestamp"] - 61,
    )
    add(
        "v1-refused-flag-not-exact",
        v1,
        "X-Encrypted-Payload is TRUE; only the exact value true marks a sealed message.",
        "not sealed",
        headers=headers_of(v1, **{"X-Encrypted-Payload": "TRUE"}),
    )
    add(
        "v1-refused-sender-not-canonical",
        v1,
        "X-Encryption-Service is ORDERS: a name has one spelling, lower case.",
        "malformed sender",
        headers=headers_of(v1, **{"X-Encryption-Service": "ORDERS"}),
    )
    upper = by_name[v1]["message_id"].upper()
    add(
        "v1-refused-seal-upper-case-hex",
        v1,
        "The message id in the seal is upper-case hex: the seal has one spelling.",
        "malformed envelope",
        headers=with_seal(headers_of(v1), by_name[v1]["message_id"], upper),
    )
    add(
        "v1-refused-response-as-request",
        "response-created-json",
        "billing's answer to orders, sent to orders as a request from billing (reflected): "
        "the direction is bound.",
        "bad tag",
        direction="request",
        receiver="orders",
    )
    add(
        "v1-refused-replay",
        v1,
        "The request delivered a second time, after it was accepted once.",
        "replay",
        delivered_before=[v1],
    )
    # -- v1 answers (the client refuses them)
    add(
        "v1-refused-wrong-status",
        "response-created-json",
        "The 201 answer arrives with status 200.",
        "bad tag",
        status=200,
    )
    add(
        "v1-refused-answer-to-another-request",
        "response-created-json",
        "The answer is delivered to a caller waiting for another request's answer.",
        "bad tag",
        reply_to=by_name["request-get-no-body"]["message_id"],
    )
    head = by_name["response-head-bodiless"]
    add(
        "v1-refused-head-answer-without-sealed-body",
        "response-head-bodiless",
        "The HEAD answer arrives without X-Mscomm-Sealed-Body.",
        "sealed body misplaced",
        headers=dict(head["headers"]),
    )
    carried = head["sealed_body_header"]
    add(
        "v1-refused-sealed-body-padded",
        "response-head-bodiless",
        "X-Mscomm-Sealed-Body with '=' padding (16 bytes: 22 characters, and '==').",
        "malformed sealed body header",
        headers=headers_of(
            "response-head-bodiless", **{HEADER_SEALED_BODY: carried + "=" * (-len(carried) % 4)}
        ),
    )

    # -- v2 requests
    v2 = "v2-request-post-json"
    vec2 = by_name[v2]
    add(
        "v2-refused-unknown-recipient-key-id",
        v2,
        "rkid names a key billing does not hold (ledger's).",
        "unknown recipient key id",
        headers=with_seal(
            headers_of(v2), "rkid=" + vec2["recipient_key_id"], "rkid=" + v2_kids["ledger"][0]
        ),
    )
    add(
        "v2-refused-untrusted-sender-key-id",
        v2,
        "skid names a key that is not one of orders' trusted public keys (ledger's).",
        "no trusted public key of the sender with that id",
        headers=with_seal(
            headers_of(v2), "skid=" + vec2["sender_key_id"], "skid=" + v2_kids["ledger"][0]
        ),
    )
    add(
        "v2-refused-flipped-ciphertext-byte",
        v2,
        "One bit of the body's last byte (the body's tag) is flipped.",
        "bad tag",
        body_hex=flipped(body_of(v2), len(body_of(v2)) // 2 - 1),
    )
    _, fields_at = decode_varint(bytes.fromhex(body_of(v2)), 0)
    add(
        "v2-refused-flipped-sealed-fields-byte",
        v2,
        "One bit of the sealed field section (its first byte, after the length) is flipped.",
        "bad tag",
        body_hex=flipped(body_of(v2), fields_at),
    )
    add(
        "v2-refused-changed-target",
        v2,
        "Delivered to /admin/invoices?customer=42.",
        "bad tag",
        target="/admin/invoices?customer=42",
    )
    add(
        "v2-refused-changed-method",
        "v2-request-get-no-body",
        "The sealed GET is delivered as a DELETE.",
        "bad tag",
        method="DELETE",
    )
    add(
        "v2-refused-stale-past",
        v2,
        "Opened 61 s after it was sealed, with the 60 s window.",
        "stale timestamp",
        receiver_time=vec2["timestamp"] + 61,
    )
    add(
        "v2-refused-stale-future",
        v2,
        "Opened 61 s before its timestamp.",
        "stale timestamp",
        receiver_time=vec2["timestamp"] - 61,
    )
    add(
        "v2-refused-flag-not-exact",
        v2,
        "X-Encrypted-Payload is True.",
        "not sealed",
        headers=headers_of(v2, **{"X-Encrypted-Payload": "True"}),
    )
    add(
        "v2-refused-unsupported-version",
        v2,
        "The seal starts v=3.",
        "unsupported version",
        headers=with_seal(headers_of(v2), "v=2;", "v=3;"),
    )
    body = bytes.fromhex(body_of(v2))
    _, offset = decode_varint(body, 0)
    overlong = encode_varint(len(body)) + body[offset:]
    add(
        "v2-refused-sealed-fields-overrun",
        v2,
        "The length before the sealed field section claims more bytes than the body has.",
        "malformed sealed headers",
        body_hex=overlong.hex(),
    )
    forged_seal, forged_body = insider_forgery(vec2)
    add(
        "v2-refused-insider-forgery",
        v2,
        "ledger, holding its own private key and every public key, seals a request claiming "
        "to be orders (orders' name and key id); only orders and billing can derive their "
        "pair key.",
        "bad tag",
        headers=headers_of(v2, **{"X-Mscomm-Seal": forged_seal}),
        body_hex=forged_body.hex(),
    )
    add(
        "v2-refused-response-as-request",
        "v2-response-created-json",
        "billing's answer to orders, sent to orders as a request from billing: the pair key "
        "is the same both ways, so only the bound direction (and status) stop it.",
        "bad tag",
        direction="request",
        receiver="orders",
    )
    add(
        "v2-refused-replay",
        v2,
        "The request delivered a second time, after it was accepted once.",
        "replay",
        delivered_before=[v2],
    )
    add(
        "v2-not-executed",
        v2,
        "Authentic, but sealed (1700001000) before the receiver's replay store began "
        "(1700001001): not run; the server answers with the sealed 503 of "
        "v2-response-not-executed.",
        "sealed before the replay store began",
        http_status=503,
        receiver_time=vec2["timestamp"] + 1,
        replay_store_since=vec2["timestamp"] + 1,
    )
    # -- v2 answers
    created = "v2-response-created-json"
    add(
        "v2-refused-wrong-status",
        created,
        "The 201 answer arrives with status 200.",
        "bad tag",
        status=200,
    )
    add(
        "v2-refused-answer-with-another-pair",
        "v2-response-rotation-older-key",
        "An answer sealed with billing's older key, to a request that was sealed to billing's "
        "current key: an answer uses its request's pair.",
        "answer sealed otherwise than its request",
        request_pair=f"{v2_kids['orders'][0]}-{v2_kids['billing'][0]}",
    )
    created_headers, created_body = wire(by_name[created])
    add(
        "v2-refused-sealed-body-on-200",
        created,
        "A 201 answer that carries its sealed body in X-Mscomm-Sealed-Body, with an empty "
        "body: only answers HTTP gives no body may.",
        "sealed body misplaced",
        headers=dict(created_headers, **{HEADER_SEALED_BODY: b64(created_body)}),
        body_hex="",
    )
    no_content = by_name["v2-response-no-content"]
    add(
        "v2-refused-no-content-without-sealed-body",
        "v2-response-no-content",
        "The 204 answer arrives without X-Mscomm-Sealed-Body.",
        "sealed body misplaced",
        headers=dict(no_content["headers"]),
    )
    bodiless = [
        by_name[n]
        for n in ("v2-response-head-bodiless", "v2-response-no-content", "v2-response-not-modified")
    ]
    # Padding and unused bits exist only where the length is not a multiple of 3.
    loose = next(v for v in bodiless if len(bytes.fromhex(v["body_hex"])) % 3)
    text = loose["sealed_body_header"]
    add(
        "v2-refused-sealed-body-padded",
        loose["name"],
        "X-Mscomm-Sealed-Body with '=' padding: the encoding is unpadded.",
        "malformed sealed body header",
        headers=headers_of(loose["name"], **{HEADER_SEALED_BODY: text + "=" * (-len(text) % 4)}),
    )
    std = next(v for v in bodiless if set("-_") & set(v["sealed_body_header"]))
    std_text = std["sealed_body_header"].replace("-", "+").replace("_", "/")
    add(
        "v2-refused-sealed-body-standard-alphabet",
        std["name"],
        "X-Mscomm-Sealed-Body in the standard base64 alphabet ('+', '/'): only the URL-safe "
        "one is accepted.",
        "malformed sealed body header",
        headers=headers_of(std["name"], **{HEADER_SEALED_BODY: std_text}),
    )
    loose_text = _with_unused_bits(text)
    add(
        "v2-refused-sealed-body-non-canonical",
        loose["name"],
        "X-Mscomm-Sealed-Body whose last character has unused bits set: it decodes to the "
        "same bytes, but is not their one spelling.",
        "malformed sealed body header",
        headers=headers_of(loose["name"], **{HEADER_SEALED_BODY: loose_text}),
    )
    return out


def _with_unused_bits(text: str) -> str:
    """``text`` (canonical base64) with the unused low bits of its last character set."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    unused = {2: 0b1111, 3: 0b11}[len(text) % 4]
    last = alphabet.index(text[-1])
    changed = alphabet[last | unused]
    if changed == text[-1]:
        raise AssertionError("the last character already has its unused bits set")
    return text[:-1] + changed


# -- the document --------------------------------------------------------------------


def build() -> dict[str, Any]:
    """Return the whole test-vector document."""
    keys = {service: key_text(raw) for service, raw in RAW_KEYS.items()}
    ring = Keyring.from_mapping(keys)
    vectors = [vector(case, ring) for case in CASES]
    v2_vectors = [v2_vector(case) for case in V2_CASES]
    by_name = {v["name"]: v for v in (*vectors, *v2_vectors)}
    return {
        "format": "mscomm-sync envelope test vectors",
        "protocol_version": envelope.VERSION,
        "generator": "scripts/make_test_vectors.py",
        "keys": keys,
        "key_ids": {
            service: Key.from_text(text, source=service).kid for service, text in keys.items()
        },
        "vectors": vectors,
        "v2": {
            "protocol_version": VERSION_2,
            "keys": v2_key_table(),
            "vectors": v2_vectors,
            "trust_file": trust_file(),
        },
        "refusals": refusals(by_name),
    }


def render() -> str:
    """Return the document as the exact text written to docs/test-vectors.json."""
    return json.dumps(build(), indent=2, ensure_ascii=True) + "\n"


def main(argv: Optional[list[str]] = None) -> int:
    """Write (or with --check, verify) docs/test-vectors.json."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the file is out of date")
    parser.add_argument("--output", type=Path, default=OUTPUT, help="where to write")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.exists() else ""
        if current != text:
            print(f"{args.output} is out of date; run {sys.argv[0]}", file=sys.stderr)
            return 1
        return 0
    args.output.write_text(text, encoding="utf-8")
    document = json.loads(text)
    count = len(document["vectors"]) + len(document["v2"]["vectors"])
    print(f"wrote {count} vectors and {len(document['refusals'])} refusals to {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
