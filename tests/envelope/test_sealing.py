"""Tests for mscomm_sync.envelope.sealing: ids, bounds, and what v1 lacks, said plainly."""

from __future__ import annotations

import base64

import pytest

from mscomm_sync.envelope import HEADER_SERVICE, REQUEST, SEALED_CONTENT_TYPE
from mscomm_sync.envelope.limits import MAX_CONTENT_TYPE
from mscomm_sync.envelope.messages import Binding
from mscomm_sync.envelope.sealing import (
    content_type_bytes,
    new_message_id,
    seal_with_v1,
    v1_problem,
)
from mscomm_sync.errors import ConfigurationError
from mscomm_sync.keyring import Keyring, generate_key


def test_message_ids_are_sixteen_fresh_bytes() -> None:
    ids = {new_message_id() for _ in range(1000)}
    assert len(ids) == 1000 and {len(i) for i in ids} == {16}


def test_the_content_type_is_bounded() -> None:
    assert content_type_bytes(None) == b""
    assert content_type_bytes("t" * MAX_CONTENT_TYPE) == b"t" * MAX_CONTENT_TYPE
    with pytest.raises(ConfigurationError) as info:
        content_type_bytes("t" * (MAX_CONTENT_TYPE + 1))
    assert info.value.reason == "invalid content type"


def test_v1_names_the_missing_variable_and_never_a_value() -> None:
    secret = generate_key()
    ring = Keyring({"ORDERS_ENCRYPTION_KEY": secret})
    assert v1_problem(ring, "orders", "billing") == (
        "for protocol v1, BILLING_ENCRYPTION_KEY is missing"
    )
    broken = Keyring({"ORDERS_ENCRYPTION_KEY": secret, "BILLING_ENCRYPTION_KEY": "nope"})
    problem = v1_problem(broken, "orders", "billing")
    assert problem is not None and "BILLING_ENCRYPTION_KEY" in problem and "nope" not in problem
    good = Keyring({"ORDERS_ENCRYPTION_KEY": secret, "BILLING_ENCRYPTION_KEY": generate_key()})
    assert v1_problem(good, "orders", "billing") is None


def test_a_v1_seal_names_its_sender_and_clock() -> None:
    ring = Keyring.from_mapping({"orders": generate_key()})
    binding = Binding._make(REQUEST, "orders", "billing", "POST", "/x", "", "")
    sealed = seal_with_v1(ring, binding, lambda: 1_700_000_000.9, b"{}", "application/json")
    assert sealed.headers[HEADER_SERVICE] == "orders"
    assert sealed.headers["Content-Type"] == SEALED_CONTENT_TYPE
    assert (sealed.timestamp, sealed.version) == (1_700_000_000, "1")
    assert len(sealed.body) == 2 + 16


def test_a_low_order_public_key_is_a_configuration_error_naming_the_service() -> None:
    """An all-zero "public key" for billing (X25519 refuses such a point) fails sealing with
    a ConfigurationError that says whose key it is, never a bare ValueError."""
    from mscomm_sync.envelope import Envelope
    from mscomm_sync.trust import Identity, TrustStore, generate_private_key

    zero = base64.urlsafe_b64encode(bytes(32)).rstrip(b"=").decode()
    orders = Envelope(
        "orders",
        identity=Identity("orders", keys=[generate_private_key()]),
        trust=TrustStore(environ={"BILLING_PUBLIC_KEY": zero}),
        versions={"2"},
    )
    with pytest.raises(ConfigurationError) as info:
        orders.seal_request(recipient="billing", method="POST", target="/x")
    assert info.value.reason == "unusable public key"
    assert "'billing'" in str(info.value)
