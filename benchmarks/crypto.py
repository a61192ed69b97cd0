"""Seal+open throughput beside bare AESGCM, at 1 KiB, 64 KiB and 1 MiB.

The baseline is one ``AESGCM.encrypt`` and one ``AESGCM.decrypt`` of the same
payload with a key object built once: the least work any AES-256-GCM seal and
open could do. Ours is ``Envelope.seal_request`` plus ``Envelope.open_request``
(key derivation, metadata binding, header encoding and the in-memory replay
store included).
"""

from __future__ import annotations

import os

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from mscomm_sync import Envelope, Keyring, generate_key
from mscomm_sync.envelope import target_from_url

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

    header = ("size", "bare MB/s", "ours MB/s", "ratio", "ours us/op")
    print("{:>7} {:>10} {:>10} {:>6} {:>11}  target".format(*header))
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

        t_bare, t_ours = interleaved([baseline, ours], number=number, rounds=7)
        ratio = t_bare / t_ours
        if size == 1024:
            verdict = "ok" if t_ours < 25e-6 else "MISS"
            goal = f"<25 us/op: {verdict}"
        else:
            goal = f">=70% of bare: {'ok' if ratio >= 0.70 else 'MISS'}"
        print(
            f"{label:>7} {size / t_bare / 1e6:10.0f} {size / t_ours / 1e6:10.0f} "
            f"{ratio:6.2f} {t_ours * 1e6:11.1f}  {goal}"
        )


if __name__ == "__main__":
    main()
