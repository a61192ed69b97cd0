#!/usr/bin/env python3
"""Regenerate docs/test-vectors.json: worked examples of the sealed envelope.

Every input is fixed (keys, message ids, timestamps, plaintexts), so the output
is byte-for-byte deterministic. Message ids are pinned by replacing the
envelope's private ``_new_message_id`` while sealing; the clock is a constant.

Usage:
    python scripts/make_test_vectors.py            # rewrite docs/test-vectors.json
    python scripts/make_test_vectors.py --check    # exit 1 if the file is out of date
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from pathlib import Path
from typing import Any, Optional
from unittest import mock

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from mscomm_sync import envelope  # noqa: E402
from mscomm_sync.envelope import Envelope, target_from_endpoint  # noqa: E402
from mscomm_sync.envelope import envelope as envelope_core  # noqa: E402
from mscomm_sync.keyring import Key, Keyring  # noqa: E402

OUTPUT = ROOT / "docs" / "test-vectors.json"

# Fixed, obviously non-secret keys: bytes 0x00..0x1f and 0x20..0x3f.
RAW_KEYS = {
    "orders": bytes(range(0x00, 0x20)),
    "billing": bytes(range(0x20, 0x40)),
}

REQUEST_ID = "00112233445566778899aabbccddeeff"

# Each case: the facts a caller passes to seal_request / seal_response.
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


def endpoint_target(endpoint: str) -> str:
    """The canonical target of an endpoint (its path and query)."""
    path, _, query = endpoint.partition("?")
    return target_from_endpoint(path, query)


def key_text(raw: bytes) -> str:
    """Encode a key the way ``mscomm keygen`` prints it."""
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def seal(case: dict[str, Any], ring: Keyring) -> envelope.Sealed:
    """Seal one case with its pinned message id and timestamp."""
    sender = Envelope(case["sender"], keyring=ring, clock=lambda: float(case["timestamp"]))
    target = endpoint_target(case["endpoint"])
    pinned = bytes.fromhex(case["message_id"])
    with mock.patch.object(envelope_core, "_new_message_id", lambda: pinned):
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
    """Return the JSON object of one test vector."""
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
    return {
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


def build() -> dict[str, Any]:
    """Return the whole test-vector document."""
    keys = {service: key_text(raw) for service, raw in RAW_KEYS.items()}
    ring = Keyring.from_mapping(keys)
    return {
        "format": "mscomm-sync envelope test vectors",
        "protocol_version": envelope.VERSION,
        "generator": "scripts/make_test_vectors.py",
        "keys": keys,
        "key_ids": {
            service: Key.from_text(text, source=service).kid for service, text in keys.items()
        },
        "vectors": [vector(case, ring) for case in CASES],
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
    print(f"wrote {len(CASES)} vectors to {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
