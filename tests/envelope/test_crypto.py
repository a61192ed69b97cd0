"""Tests for mscomm_sync.envelope.crypto: per-message keys and the associated data.

Each is checked against docs/protocol.md written out directly (HKDF from bare
``cryptography``, the associated-data layout with ``struct``), not against the
code's own helpers. That the cached builder equals the layout for any eleven
fields is in test_envelope_properties.py; here are the keyword builder, the
key derivation and the caches' edges.
"""

from __future__ import annotations

import struct

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import given, settings
from hypothesis import strategies as st

from mscomm_sync.envelope import crypto
from mscomm_sync.envelope.crypto import (
    BODY_NONCE,
    META_NONCE,
    VERSION,
    associated_data,
    derive_message_key,
)

KID = "0123456789abcdef"
MID = "00112233445566778899aabbccddeeff"
REQUEST_ID = "ffeeddccbbaa99887766554433221100"


def reference_message_key(secret: bytes, message_id: bytes) -> bytes:
    """docs/protocol.md's message key: HKDF-SHA256, salt 32 zero bytes, info label || id."""
    return HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=bytes(32),
        info=b"mscomm-sync/1 message key" + message_id,
    ).derive(secret)


def spec_layout(*fields: str) -> bytes:
    """docs/protocol.md's associated data: the label, eleven 32-bit lengths, eleven fields."""
    assert len(fields) == 11
    encoded = [f.encode("utf-8") for f in fields]
    return (
        b"mscomm-sync envelope"
        + struct.pack(">11I", *(len(f) for f in encoded))
        + b"".join(encoded)
    )


def request_aad(**changes: object) -> bytes:
    """associated_data() of a fixed request, with some fields changed."""
    fields: dict[str, object] = {
        "kid": KID,
        "direction": "request",
        "sender": "orders",
        "recipient": "billing",
        "method": "POST",
        "target": "/invoices?customer=42",
        "timestamp": 1_700_000_000,
        "message_id": MID,
    }
    fields.update(changes)
    return associated_data(**fields)  # type: ignore[arg-type]


# -- the message key ------------------------------------------------------------


def test_message_key_is_hkdf_sha256_as_documented() -> None:
    """derive_message_key equals cryptography's HKDF-SHA256 with the documented salt and info."""
    secret = bytes(range(32))
    message_id = bytes(range(100, 116))
    assert derive_message_key(secret, message_id) == reference_message_key(secret, message_id)


@settings(max_examples=200, deadline=None)
@given(secret=st.binary(min_size=32, max_size=32), message_id=st.binary(min_size=16, max_size=16))
def test_message_key_matches_the_reference_for_any_key_and_id(
    secret: bytes, message_id: bytes
) -> None:
    """For any 32-byte key and 16-byte id, the key is the reference HKDF output."""
    assert derive_message_key(secret, message_id) == reference_message_key(secret, message_id)


def test_message_key_is_32_bytes() -> None:
    """The message key is an AES-256 key: 32 bytes."""
    assert len(derive_message_key(bytes(32), bytes(16))) == 32


def test_message_key_differs_per_message_id_and_per_secret() -> None:
    """Each (key, message id) pair yields its own AES key; one changed bit changes it."""
    secret, other = bytes(32), bytes([1]) + bytes(31)
    keys = {
        derive_message_key(secret, bytes(16)),
        derive_message_key(secret, bytes([1]) + bytes(15)),
        derive_message_key(secret, bytes(15) + bytes([0x80])),
        derive_message_key(other, bytes(16)),
    }
    assert len(keys) == 4


def test_message_keys_stay_right_when_keys_alternate() -> None:
    """Interleaving two senders' keys never gives one sender the other's key state."""
    first, second = bytes(range(32)), bytes(range(32, 64))
    crypto._expander.cache_clear()  # type: ignore[attr-defined]
    for n in range(4):
        message_id = bytes([n]) * 16
        for secret in (first, second, first):
            assert derive_message_key(secret, message_id) == reference_message_key(
                secret, message_id
            )


def test_nonces_and_version_are_the_documented_constants() -> None:
    """The nonces are 12 zero bytes (body) and 11 zero bytes then 0x01 (type); version is 1."""
    assert bytes(12) == BODY_NONCE
    assert bytes(11) + b"\x01" == META_NONCE
    assert VERSION == "1"


# -- the associated data -----------------------------------------------------------


def test_request_associated_data_is_the_documented_layout() -> None:
    """A request binds version 1, its fields in table order, and empty status and reply-to."""
    expected = spec_layout(
        "1",
        KID,
        "request",
        "orders",
        "billing",
        "POST",
        "/invoices?customer=42",
        "1700000000",
        MID,
        "",
        "",
    )
    assert request_aad() == expected


def test_response_associated_data_is_the_documented_layout() -> None:
    """A response binds its status in decimal and the answered request's id last."""
    aad = associated_data(
        kid=KID,
        direction="response",
        sender="billing",
        recipient="orders",
        method="POST",
        target="/invoices",
        timestamp=1_700_000_001,
        message_id=MID,
        status=201,
        reply_to=REQUEST_ID,
    )
    expected = spec_layout(
        "1",
        KID,
        "response",
        "billing",
        "orders",
        "POST",
        "/invoices",
        "1700000001",
        MID,
        "201",
        REQUEST_ID,
    )
    assert aad == expected


def test_status_zero_is_bound_as_zero_not_as_empty() -> None:
    """status=0 is a value ("0"), unlike status=None (empty)."""
    with_zero, without = request_aad(status=0), request_aad(status=None)
    assert with_zero != without
    assert with_zero.endswith(MID.encode() + b"0")


def test_timestamp_is_decimal_without_leading_zeros() -> None:
    """Timestamp 0 and a small timestamp are written as plain decimal."""
    assert request_aad(timestamp=0).endswith(b"0" + MID.encode())
    assert request_aad(timestamp=7) == spec_layout(
        "1",
        KID,
        "request",
        "orders",
        "billing",
        "POST",
        "/invoices?customer=42",
        "7",
        MID,
        "",
        "",
    )


def test_lengths_count_utf8_bytes() -> None:
    """A non-ASCII target's length is its UTF-8 byte count, not its character count."""
    target = "/café/日本"
    aad = request_aad(target=target)
    lengths = struct.unpack_from(">11I", aad, len(b"mscomm-sync envelope"))
    assert lengths[6] == len(target.encode("utf-8")) == 13 != len(target)


def test_targets_never_enter_the_associated_data_cache() -> None:
    """The cache of associated-data heads is reached before the tag is checked, and a
    forger chooses the target and its length: no target, short or long, is kept, so
    one route's heads serve every target and a flood of targets adds nothing."""
    crypto._aad_head.cache_clear()  # type: ignore[attr-defined]
    for target in ("/a", "/b?x=1", "/x?" + "q" * 600, "/x?" + "q" * 100_000):
        assert target.encode() in request_aad(target=target)
    assert crypto._aad_head.cache_info().currsize == 1  # type: ignore[attr-defined]
    assert crypto._aad_head.cache_info().hits == 3  # type: ignore[attr-defined]


@settings(max_examples=50, deadline=None)
@given(target=st.text(min_size=500, max_size=2000))
def test_long_targets_get_the_same_layout(target: str) -> None:
    """Long targets (the cache never holds one) get exactly the layout too."""
    assert request_aad(target="/" + target) == spec_layout(
        "1",
        KID,
        "request",
        "orders",
        "billing",
        "POST",
        "/" + target,
        "1700000000",
        MID,
        "",
        "",
    )


HEAD_FIELDS = {
    "kid": KID,
    "direction": "request",
    "sender": "orders",
    "recipient": "billing",
    "method": "POST",
}


def head_layout(**changes: str) -> bytes:
    """spec_layout of the fixed request with some of its first six fields changed."""
    head = {**HEAD_FIELDS, **changes}
    return spec_layout(
        "1",
        head["kid"],
        head["direction"],
        head["sender"],
        head["recipient"],
        head["method"],
        "/invoices?customer=42",
        "1700000000",
        MID,
        "",
        "",
    )


@settings(max_examples=100, deadline=None)
@given(field=st.sampled_from(sorted(HEAD_FIELDS)), value=st.text(min_size=1, max_size=20))
def test_the_cached_head_is_keyed_on_every_head_field(field: str, value: str) -> None:
    """Routes with one target but another key id, direction, party or method never share a
    cached head: each gets its own layout, before and after the other is cached."""
    assert request_aad() == head_layout()
    assert request_aad(**{field: value}) == head_layout(**{field: value})
    assert request_aad() == head_layout()
