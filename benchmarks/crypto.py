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

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from mscomm_sync import Envelope, Keyring, generate_key
from mscomm_sync.envelope import target_from_url
from mscomm_sync.envelope.crypto import derive_message_key

from .timing import interleaved

SIZES = ((1024, "1 KiB", 4000), (64 * 1024, "64 KiB", 400), (1024 * 1024, "1 MiB", 30))


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
            sealed = sender.seal_request(
                recipient="billing",
                method="POST",
                target=target,
                body=body,
                content_type="application/json",
            )
            receiver.open_request(
                method="POST", target=target, headers=sealed.headers, body=sealed.body
            )

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


if __name__ == "__main__":
    main()
