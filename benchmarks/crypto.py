"""Seal+open throughput beside bare AESGCM, at 1 KiB, 64 KiB and 1 MiB.

The baseline is one ``AESGCM.encrypt`` and one ``AESGCM.decrypt`` of the same
payload with a key object built once: the least work any AES-256-GCM seal and
open could do. Ours is ``Envelope.seal_request`` plus ``Envelope.open_request``
(key derivation, metadata binding, header encoding and the in-memory replay
store included).

A third contender, the *floor*, is the baseline plus what the protocol itself
requires per message: deriving a fresh key on each side (HKDF) and building an
``AESGCM`` object for it. The gap between the floor and ours is our own
overhead; the gap between the baseline and the floor is the price of a fresh
key per message, which no implementation of the protocol can avoid.
"""

from __future__ import annotations

import os
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from mscomm_sync import Envelope, Identity, Keyring, TrustStore, generate_key
from mscomm_sync.envelope import target_from_url
from mscomm_sync.envelope.crypto import derive_message_key
from mscomm_sync.envelope.v2 import pair_key
from mscomm_sync.trust import generate_private_key

from .timing import interleaved

SIZES = ((1024, "1 KiB", 4000), (64 * 1024, "64 KiB", 400), (1024 * 1024, "1 MiB", 30))
#: Ten ordinary end-to-end request headers, as a web client sends them.
HEADERS = [
    ("accept", "application/json"),
    ("accept-language", "en-GB,en;q=0.9"),
    ("authorization", "Bearer " + "t" * 40),
    ("cache-control", "no-cache"),
    ("idempotency-key", "order-42-charge"),
    ("user-agent", "orders/1.4 python-requests/2.32"),
    ("x-request-id", "5f0c6a8e9b7d4c21"),
    ("x-tenant", "acme"),
    ("x-feature-flags", "fast-checkout,new-invoice"),
    ("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
]


def round_trip(
    sender: Envelope, receiver: Envelope, target: str, body: bytes, headers: Any = None
) -> None:
    """Seal one request from ``sender`` and open it as ``receiver`` (memory replay store)."""
    sealed = sender.seal_request(
        recipient="billing",
        method="POST",
        target=target,
        body=body,
        content_type="application/json",
        headers=headers,
    )
    receiver.open_request(method="POST", target=target, headers=sealed.headers, body=sealed.body)


def main() -> None:
    ring = Keyring.from_mapping({"orders": generate_key(), "billing": generate_key()})
    sender = Envelope("orders", keyring=ring)
    receiver = Envelope("billing", keyring=ring)
    target = target_from_url("http://127.0.0.1:8000/api/v1/charge?order=42")
    bare = AESGCM(os.urandom(32))
    nonce = os.urandom(12)
    aad = os.urandom(120)

    secret = os.urandom(32)
    header = ("size", "bare MB/s", "floor MB/s", "ours MB/s", "ratio", "ours us/op", "floor us")
    print("{:>7} {:>10} {:>10} {:>10} {:>6} {:>11} {:>9}  target".format(*header))
    for size, label, number in SIZES:
        body = os.urandom(size)

        def baseline(body: bytes = body) -> None:
            bare.decrypt(nonce, bare.encrypt(nonce, body, aad), aad)

        def ours(body: bytes = body) -> None:
            round_trip(sender, receiver, target, body)

        def floor(body: bytes = body) -> None:
            mid = os.urandom(16)
            sealer = AESGCM(derive_message_key(secret, mid))
            sealed = sealer.encrypt(nonce, body, aad)
            AESGCM(derive_message_key(secret, mid)).decrypt(nonce, sealed, aad)

        t_bare, t_floor, t_ours = interleaved([baseline, floor, ours], number=number, rounds=7)
        ratio = t_bare / t_ours
        if size == 1024:
            verdict = "ok" if t_ours < 25e-6 else "MISS"
            goal = f"<25 us/op: {verdict}"
        else:
            goal = f">=70% of bare: {'ok' if ratio >= 0.70 else 'MISS'}"
        print(
            f"{label:>7} {size / t_bare / 1e6:10.0f} {size / t_floor / 1e6:10.0f} "
            f"{size / t_ours / 1e6:10.0f} {ratio:6.2f} {t_ours * 1e6:11.1f} "
            f"{t_floor * 1e6:9.1f}  {goal}"
        )
    versions_side_by_side(ring, target)


def _v2_pair() -> tuple[Envelope, Envelope]:
    orders, billing = generate_private_key(), generate_private_key()
    environ = {"ORDERS_PUBLIC_KEY": orders.public.text, "BILLING_PUBLIC_KEY": billing.public.text}
    sender = Envelope(
        "orders",
        identity=Identity("orders", keys=[orders]),
        trust=TrustStore(environ=environ),
        versions={"2"},
    )
    receiver = Envelope(
        "billing",
        identity=Identity("billing", keys=[billing]),
        trust=TrustStore(environ=environ),
        versions={"2"},
    )
    return sender, receiver


def versions_side_by_side(ring: Keyring, target: str) -> None:
    """v1 beside v2, warm; then the first message to a new peer."""
    v1_sender = Envelope("orders", keyring=ring, versions={"1"})
    v1_receiver = Envelope("billing", keyring=ring, versions={"1"})
    v2_sender, v2_receiver = _v2_pair()

    print("\nprotocol v1 beside v2, seal + open, the pair's key cached (v1 sends its")
    print("headers in clear; v2 seals them):")
    print("{:>7} {:>8} {:>11} {:>11} {:>9} {:>10}".format(
        "size", "headers", "v1 us/op", "v2 us/op", "v2 / v1", "v2 - v1"))  # fmt: skip
    for size, label, number in SIZES:
        body = os.urandom(size)
        for headers in (None, HEADERS):

            def v1(body: bytes = body, headers: Any = headers) -> None:
                round_trip(v1_sender, v1_receiver, target, body, headers)

            def v2(body: bytes = body, headers: Any = headers) -> None:
                round_trip(v2_sender, v2_receiver, target, body, headers)

            t1, t2 = interleaved([v1, v2], number=number, rounds=7)
            count = len(headers or ())
            print(
                f"{label:>7} {count:>8} {t1 * 1e6:11.1f} {t2 * 1e6:11.1f} {t2 / t1:9.2f}"
                f" {(t2 - t1) * 1e6:+9.1f}"
            )

    # The first message to a new peer: each side computes the pair key once
    # (X25519 exchange, then HKDF); every later message finds it cached.
    own, peer = generate_private_key(), generate_private_key()
    uncached = pair_key.__wrapped__  # type: ignore[attr-defined]
    (cold,) = interleaved(
        [lambda: uncached(own, "orders", peer.public, "billing")], number=500, rounds=7
    )
    print(
        f"\nthe pair key for a new peer (X25519 + HKDF): {cold * 1e6:.1f} us on each side,"
        f" so the first message to a new peer costs about {2 * cold * 1e6:.0f} us more"
        " (sealer and opener each compute it once)"
    )


if __name__ == "__main__":
    main()
