"""Tests for mscomm_sync.envelope.v1: one message under its sender's shared key."""

from __future__ import annotations

import os

import pytest
from cryptography.exceptions import InvalidTag

from mscomm_sync.envelope.headers import parse_seal
from mscomm_sync.envelope.messages import REQUEST, RESPONSE, Binding
from mscomm_sync.envelope.v1 import open_v1, seal_v1
from mscomm_sync.keyring import Key, generate_key

BINDING = Binding._make(REQUEST, "orders", "billing", "POST", "/charge?x=1", "", "")


def key() -> Key:
    return Key.from_text(generate_key(), source="ORDERS_ENCRYPTION_KEY")


def sealed(k: Key, body: bytes = b'{"a":1}', ct: bytes = b"application/json") -> tuple:
    mid = os.urandom(16)
    seal, data = seal_v1(k, BINDING, "1700000000", mid, body, ct)
    fields = parse_seal(seal)
    assert fields is not None
    return fields, data


def test_a_message_opens_to_its_content_type_and_body() -> None:
    k = key()
    fields, data = sealed(k)
    assert (fields.version, fields.kid, fields.timestamp) == ("1", k.kid, "1700000000")
    assert open_v1(k, BINDING, fields, data) == ("application/json", b'{"a":1}')
    assert len(data) == len(b'{"a":1}') + 16


def test_no_content_type_opens_as_none() -> None:
    k = key()
    fields, data = sealed(k, body=b"", ct=b"")
    assert open_v1(k, BINDING, fields, data) == (None, b"")


@pytest.mark.parametrize(
    "other",
    [
        Binding._make(REQUEST, "orders", "billing", "GET", "/charge?x=1", "", ""),
        Binding._make(REQUEST, "orders", "billing", "POST", "/charge?x=2", "", ""),
        Binding._make(REQUEST, "orders", "ledger", "POST", "/charge?x=1", "", ""),
        Binding._make(RESPONSE, "orders", "billing", "POST", "/charge?x=1", "200", ""),
    ],
)
def test_it_opens_only_under_its_own_binding(other: Binding) -> None:
    k = key()
    fields, data = sealed(k)
    with pytest.raises(InvalidTag):
        open_v1(k, other, fields, data)


def test_another_key_or_a_flipped_byte_does_not_open() -> None:
    k = key()
    fields, data = sealed(k)
    with pytest.raises(InvalidTag):
        open_v1(key(), BINDING, fields, data)
    flipped = bytes([data[0] ^ 1]) + data[1:]
    with pytest.raises(InvalidTag):
        open_v1(k, BINDING, fields, flipped)
