"""Tests for mscomm_sync.envelope.opening: the checks come in the order that costs us least."""

from __future__ import annotations

from typing import Any

import pytest

from mscomm_sync.envelope import HEADER_ENCRYPTED, HEADER_SEAL, HEADER_SERVICE, REQUEST, Envelope
from mscomm_sync.envelope.headers import SealFields, parse_seal
from mscomm_sync.envelope.messages import Binding
from mscomm_sync.envelope.opening import (
    is_service_name,
    open_message,
    read_envelope,
    v1_key,
)
from mscomm_sync.errors import IntegrityError
from mscomm_sync.keyring import Keyring, generate_key

TS = 1_700_000_000
FIELDS = SealFields("1", "0123456789abcdef", str(TS), "ab" * 16, "cd" * 16)
BINDING = Binding._make(REQUEST, "orders", "billing", "POST", "/x", "", "")
SEAL = f"v=1;kid=0123456789abcdef;ts={TS};id={'ab' * 16};ct={'cd' * 16}"
GOOD = {HEADER_ENCRYPTED: "true", HEADER_SEAL: SEAL, HEADER_SERVICE: "orders"}


def reason(call: Any, *args: Any) -> str:
    with pytest.raises(IntegrityError) as info:
        call(*args)
    return info.value.reason


class Never:
    """A key whose use fails the test: no check that should refuse first may let it decrypt."""

    @property
    def secret(self) -> bytes:
        raise AssertionError("decrypted although an earlier check should have refused")


def test_a_good_envelope_gives_its_sender_seal_and_bound_method() -> None:
    assert read_envelope(REQUEST, GOOD, b"", None, {"1"}, 10, "post") == ("orders", FIELDS, "POST")


@pytest.mark.parametrize("method", ["", "P0ST", "GET /x", "X" * 17])
def test_a_method_that_cannot_be_bound_is_a_malformed_envelope(method: str) -> None:
    assert reason(read_envelope, REQUEST, GOOD, b"", None, {"1"}, 10, method) == (
        "malformed envelope"
    )


@pytest.mark.parametrize(
    ("headers", "body", "versions", "expected", "why"),
    [
        ({}, b"x" * (10 + 64 * 1024 + 33), {"1"}, None, "body too large"),  # before all else
        ({**GOOD, HEADER_ENCRYPTED: "TRUE"}, b"", {"1"}, None, "not sealed"),
        ({**GOOD, HEADER_SEAL: "v=3;kid=x"}, b"", {"1"}, None, "unsupported version"),
        ({**GOOD, HEADER_SEAL: "v=1;kid=x"}, b"", {"1"}, None, "malformed envelope"),
        (GOOD, b"", {"2"}, None, "protocol v1 is not allowed here"),
        ({HEADER_ENCRYPTED: "true", HEADER_SEAL: SEAL}, b"", {"1"}, None, "malformed envelope"),
        ({**GOOD, HEADER_SERVICE: "Orders"}, b"", {"1"}, None, "malformed sender"),
        (GOOD, b"", {"1"}, "billing", "unexpected sender"),
    ],
)
def test_the_form_is_refused_before_any_key_is_looked_up(
    headers: dict[str, str], body: bytes, versions: set[str], expected: Any, why: str
) -> None:
    assert reason(read_envelope, REQUEST, headers, body, expected, versions, 10, "POST") == why


def test_service_names_are_canonical() -> None:
    assert is_service_name("billing-v2")
    assert not is_service_name("Billing")
    assert not is_service_name("billing.v2")


@pytest.mark.parametrize("now", [TS - 61, TS + 61])
def test_a_stale_message_is_never_decrypted(now: int) -> None:
    assert reason(open_message, BINDING, FIELDS, b"", Never(), now, 60, 10) == "stale timestamp"


def test_the_plaintext_is_held_to_the_limit_once_opened() -> None:
    ring = Keyring.from_mapping({"orders": generate_key(), "billing": generate_key()})
    key = ring.keys_for("orders").sealing
    sender = Envelope("orders", keyring=ring)
    message = sender.seal_request(recipient="billing", method="POST", target="/x", body=b"x" * 11)
    fields = parse_seal(message.headers[HEADER_SEAL])
    assert fields is not None
    binding = Binding._make(REQUEST, "orders", "billing", "POST", "/x", "", "")
    now = int(fields.timestamp)
    assert reason(open_message, binding, fields, message.body, key, now, 60, 10) == "body too large"
    opened = open_message(binding, fields, message.body, key, now, 60, 11)
    assert (opened.sender, opened.body, opened.timestamp) == ("orders", b"x" * 11, now)


def test_a_v1_key_that_is_not_there_is_named_in_the_reason() -> None:
    ring = Keyring.from_mapping({"orders": generate_key()})
    assert reason(v1_key, ring, BINDING, FIELDS, b"", 10) == "unknown key id"
    why = reason(v1_key, Keyring({}), BINDING, FIELDS, b"", 10)
    assert why == "no usable key for sender (ORDERS_ENCRYPTION_KEY: missing)"
